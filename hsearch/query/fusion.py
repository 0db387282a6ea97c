"""Fusion as pure functions over N score lists aligned on the same candidates.

`scores` maps a signal name to a float array (one score per candidate, NaN or 0 where the signal
did not score it). Each function returns the fused score per candidate; the caller sorts.
"""
from __future__ import annotations

import numpy as np

from hsearch.errors import InputError

FUSIONS = ("weighted", "rrf")
NORMALIZERS = ("none", "minmax", "dbsf")


def normalize(x: np.ndarray, how: str) -> np.ndarray:
    """Rescale one signal's scores over the candidates: min-max to [0, 1], or distribution-based
    (dbsf: mean +- 3 standard deviations mapped to [0, 1], as in Qdrant's DBSF)."""
    x = np.asarray(x, dtype=np.float64)
    if how == "none" or x.size == 0:
        return x
    if how == "minmax":
        lo, hi = x.min(), x.max()
        return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)
    if how == "dbsf":
        mu, sd = x.mean(), x.std()
        if sd == 0:
            return np.zeros_like(x)
        lo, hi = mu - 3 * sd, mu + 3 * sd
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    raise InputError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALIZERS)}")


def weighted(scores: dict[str, np.ndarray], weights: dict[str, float], norm: str = "none") -> np.ndarray:
    """sum_s w_s * norm(score_s) / sum_s w_s (BGE-M3's combined score when norm is 'none')."""
    total = sum(weights.get(s, 0.0) for s in scores)
    if total <= 0:
        raise InputError("fusion weights of the requested signals sum to 0; give at least one a positive weight")
    fused = np.zeros(len(next(iter(scores.values()))), dtype=np.float64)
    for s, x in scores.items():
        fused += weights.get(s, 0.0) * normalize(x, norm)
    return fused / total


def rrf(scores: dict[str, np.ndarray], k: int = 60, weights: dict[str, float] | None = None) -> np.ndarray:
    """Reciprocal rank fusion: sum_s w_s / (k + rank_s), ranks from 1, ties share the better rank."""
    if k < 0:
        raise InputError(f"rrf k must be >= 0, got {k}")
    fused = np.zeros(len(next(iter(scores.values()))), dtype=np.float64)
    for s, x in scores.items():
        x = np.asarray(x, dtype=np.float64)
        # rank = 1 + number of candidates with a strictly better score
        ranks = 1 + np.searchsorted(np.sort(-x), -x, side="left")
        fused += (weights or {}).get(s, 1.0) / (k + ranks)
    return fused
