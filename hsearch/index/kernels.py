"""Small numpy kernels the stores and the segment source share, each with the plain reference that
its test compares it to (the habit of bm25s: top-k in its own file, checked against a loop)."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k largest scores, best first; ties go to the smaller id (`ids[i]`, or the
    index i itself when `ids` is None)."""
    if k <= 0:
        return np.empty(0, np.int64)
    if k < len(scores):
        # argpartition finds the k-th best value; keep every score reaching it so ties sort by id.
        kth = scores[np.argpartition(-scores, k - 1)[:k]].min()
        idx = np.flatnonzero(scores >= kth)
    else:
        idx = np.arange(len(scores))
    key = idx if ids is None else np.asarray(ids)[idx]
    return idx[np.lexsort((key, -scores[idx]))[:k]]


def top_k_reference(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    key = range(len(scores)) if ids is None else list(ids)
    return np.array(sorted(range(len(scores)), key=lambda i: (-scores[i], key[i]))[:max(k, 0)], np.int64)


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) over the pairs, without a Python loop: the flat rows of a CSR
    layout's entries (a sparse document's terms, a multi-vector document's tokens)."""
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)


def ranges_reference(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends)] + [np.empty(0, np.int64)])
