"""The learned-sparse store's compiled loops (numba). `top_k_postings`: one pass over the query's postings and
one over the docs they touched, with a top-k heap. NumPy needs a pass per step there (concatenate, multiply,
bincount over every doc, nonzero over every doc, a partition), each one over the whole segment.
`exact_scores`: given docs' scores through the forward index (re-scoring another signal's candidates), where
NumPy's dozen small array steps cost more than the arithmetic.

Its sums are the NumPy paths' own, bit for bit: float64 products q * w added to 0.0 term after term, in the
query's (ascending) term order, then one division by the segment's scale and a rounding to float32; no
fast-math, so no reordering or fused multiply-adds. Ties at the cut go to the smaller position (id).

numba is imported on a process's first sparse search where compiled loops are turned on (compiled.py).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _better(s1, p1, s2, p2) -> bool:
    return s1 > s2 or (s1 == s2 and p1 < p2)


@numba.njit(cache=True, nogil=True)
def _sift_down(hs, hp, size, i):
    """Restore the heap below i; its root is the worst kept hit (lowest score, then the larger position)."""
    while True:
        worst, left = i, 2 * i + 1
        for c in (left, left + 1):
            if c < size and _better(hs[worst], hp[worst], hs[c], hp[c]):
                worst = c
        if worst == i:
            return
        hs[i], hs[worst] = hs[worst], hs[i]
        hp[i], hp[worst] = hp[worst], hp[i]
        i = worst


@numba.njit(cache=True, nogil=True)
def top_k_postings(pd, pw, lo, hi, qw, scale, k, allow, acc, seen, touched, n_prev, positive):
    """Top-k doc positions (int64) and float32 scores, best first, of the postings pd/pw[lo[t]:hi[t]] weighted
    by qw[t], and how many docs the postings touched. Only docs scoring > 0 are hits; with a non-empty `allow`
    (a bool per position), only allowed ones. acc (float64), seen (bool) and touched (int32), each of the
    segment's length, are scratch: the previous call's `n_prev` touched docs are zeroed first, and this call
    leaves every doc's float64 sum in acc (0.0 for docs no posting touched) for re-scoring to read.
    `positive`: every product q * w is > 0 (the caller checks, SparseReader.search), so a doc's sum is 0.0
    exactly until its first posting: that tells a new doc without reading `seen`, a second array per posting
    (a fifth of the loop's time at 100k docs)."""
    for i in range(n_prev):
        d = touched[i]
        acc[d] = 0.0
        seen[d] = False
    n_touched = 0
    if positive:
        for t in range(lo.shape[0]):
            q = qw[t]
            for j in range(lo[t], hi[t]):
                d = pd[j]
                a = acc[d]
                if a == 0.0:
                    touched[n_touched] = d
                    n_touched += 1
                acc[d] = a + np.float64(pw[j]) * q
    else:
        for t in range(lo.shape[0]):
            q = qw[t]
            for j in range(lo[t], hi[t]):
                d = pd[j]
                if not seen[d]:
                    seen[d] = True
                    touched[n_touched] = d
                    n_touched += 1
                acc[d] += np.float64(pw[j]) * q
    hs = np.empty(k, np.float32)
    hp = np.empty(k, np.int64)
    size = 0
    filtered = allow.shape[0] > 0
    for i in range(n_touched):
        d = touched[i]
        a = acc[d]
        if not a > 0.0 or (filtered and not allow[d]):
            continue
        s = np.float32(a / scale)
        if size < k:  # sift up
            j = size
            size += 1
            hs[j], hp[j] = s, d
            while j > 0:
                parent = (j - 1) // 2
                if not _better(hs[parent], hp[parent], hs[j], hp[j]):
                    break
                hs[j], hs[parent] = hs[parent], hs[j]
                hp[j], hp[parent] = hp[parent], hp[j]
                j = parent
        elif _better(s, d, hs[0], hp[0]):
            hs[0], hp[0] = s, d
            _sift_down(hs, hp, size, 0)
    order = np.argsort(hp[:size], kind="mergesort")  # by position, then stably by score: best first
    order = order[np.argsort(-hs[:size][order], kind="mergesort")]
    return hp[:size][order], hs[:size][order], n_touched


@numba.njit(cache=True, nogil=True)
def exact_scores(dp, dt, dw, pos, qt, qw):
    """float64 scores of doc positions `pos`: each doc's forward terms dt/dw[dp[p]:dp[p + 1]] (ascending token
    ids) that the query holds (qt ascending, weights qw), added to 0.0 in that order, as `SparseReader._exact`."""
    out = np.zeros(pos.shape[0], np.float64)
    nq = qt.shape[0]
    for i in range(pos.shape[0]):
        p = pos[i]
        acc = 0.0
        for j in range(dp[p], dp[p + 1]):
            t = dt[j]
            lo, hi = 0, nq
            while lo < hi:  # binary search of t in qt
                mid = (lo + hi) >> 1
                if qt[mid] < t:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < nq and qt[lo] == t:
                acc += np.float64(dw[j]) * qw[lo]
        out[i] = acc
    return out


@numba.njit(cache=True, nogil=True)
def query_terms(terms, term_ptr, qt, qw):
    """The query's terms that the segment holds, in ascending token order (which fixes every path's summation
    order): (token ids, float64 weights, term indexes, posting starts, posting ends, postings in all). `terms`
    ascending; qt/qw the query's token ids and weights in any order. What `SparseReader.search` did in a dozen
    NumPy steps of about a microsecond each."""
    order = np.argsort(qt, kind="mergesort")
    n = order.shape[0]
    ot, ow = np.empty(n, np.int64), np.empty(n, np.float64)
    at, lo, hi = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    found, postings = 0, 0
    for i in range(n):
        t = qt[order[i]]
        j = np.searchsorted(terms, t)
        if j < terms.shape[0] and terms[j] == t:
            ot[found], ow[found], at[found] = t, qw[order[i]], j
            lo[found], hi[found] = term_ptr[j], term_ptr[j + 1]
            postings += term_ptr[j + 1] - term_ptr[j]
            found += 1
    return ot[:found], ow[:found], at[:found], lo[:found], hi[:found], postings
