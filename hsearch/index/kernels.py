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


def symmetric_int8(x: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Each row of x (n, d) as int8 codes |c| <= 2**(bits-1) - 1 and a float32 scale (n,), x ~= scale * c:
    symmetric, the row's largest magnitude on the largest code (the int8 ONNX graph's weights per output
    channel; the MaxSim query per token)."""
    qmax = 2 ** (bits - 1) - 1
    scale = (np.maximum(np.abs(x).max(1), 1e-12) / qmax).astype(np.float32)
    return np.clip(np.rint(x / scale[:, None]), -qmax, qmax).astype(np.int8), scale


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) over the pairs, without a Python loop: the flat rows of a CSR
    layout's entries (a sparse document's terms, a multi-vector document's tokens)."""
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)


def ranges_reference(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends)] + [np.empty(0, np.int64)])
