"""Timing queries, and comparing ranked lists: what every latency benchmark measures the same way."""
from __future__ import annotations

import gc
import statistics
import time

import numpy as np


def time_queries(fn, nq: int, repeats: int):
    """Warm-up pass (its results are returned), then `repeats` timed passes over all queries.
    Returns (median p50 ms, median p95 ms, results of the warm-up pass)."""
    results = [fn(i) for i in range(nq)]
    p50, p95 = [], []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            ts = np.empty(nq)
            for i in range(nq):
                t = time.perf_counter()
                fn(i)
                ts[i] = time.perf_counter() - t
        finally:
            gc.enable()
        p50.append(np.percentile(ts, 50) * 1e3)
        p95.append(np.percentile(ts, 95) * 1e3)
    return statistics.median(p50), statistics.median(p95), results


def docs_of(chunk_ids, doc_of: dict, k: int) -> list:
    """Chunk ids -> doc ids, first occurrence kept (hsearch returns each document once)."""
    out, seen = [], set()
    for c in chunk_ids:
        d = doc_of.get(int(c))
        if d is not None and d not in seen:
            seen.add(d)
            out.append(d)
    return out[:k]


def overlap(a: list, b: list, k: int) -> float:
    """Mean |top-k(a_i) & top-k(b_i)| / |top-k(b_i)| over queries (b: the reference)."""
    vals = [len(set(x[:k]) & set(y[:k])) / len(y[:k]) for x, y in zip(a, b) if len(y)]
    return float(np.mean(vals)) if vals else float("nan")
