"""BGE-M3's three relevance scores and their combination (Chen et al. 2024, "BGE M3-Embedding", section
3.2; FlagEmbedding's BGEM3FlagModel), as plain pairwise reference functions: the stores' oracles."""
from __future__ import annotations

import numpy as np


def sparse_score(q: dict[int, float], p: dict[int, float]) -> float:
    """Sum over token ids present in both of w_q[t] * w_p[t]."""
    if len(q) > len(p):
        q, p = p, q
    return float(sum(w * p[t] for t, w in q.items() if t in p))


def colbert_score(q: np.ndarray, p: np.ndarray) -> float:
    """MaxSim: mean over the query's vectors of the max inner product with any passage vector."""
    if len(q) == 0 or len(p) == 0:
        return 0.0
    return float((q @ p.T).max(axis=1).mean())


def combine(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted sum divided by the sum of weights (BGE-M3's combined score)."""
    total = sum(weights[s] for s in scores)
    return sum(weights[s] * np.asarray(scores[s], dtype=np.float64) for s in scores) / total
