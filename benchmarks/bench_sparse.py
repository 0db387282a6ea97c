"""Build time and exact top-k latency of the sparse inverted index on synthetic Zipf-like data.

    python benchmarks/bench_sparse.py --docs 100000 --terms 60 --vocab 250002 --queries 200 --k 10 --repeats 5

Term ranks follow p(r) ~ 1 / (r + 1)^zipf, mapped to random token ids, so a few terms have posting
lists covering most docs (the hard case for an exhaustive scorer). Weights are uniform in [0.01, 0.4],
about the range BGE-M3's sparse head produces.

Each query runs through the default search (MaxScore pruning, where the segment is large enough; with
--any-size always) and the exhaustive one
(`prune=False`), alternating so both see the same machine load; the script first checks that both
return identical top-k ids and float32 scores (exit status 1 otherwise), then reports median / p95
latency of each (wall clock, and the thread's CPU time).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report import commit_header  # noqa: E402

from hsearch.index import sparse  # noqa: E402
from hsearch.index.sparse import open_sparse, write_sparse  # noqa: E402


def zipf_sampler(rng, vocab, s):
    """Draws token ids with Zipf-like frequencies (rank -> random id)."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** s)
    cdf /= cdf[-1]
    ids = rng.permutation(vocab)
    return lambda n: ids[np.minimum(np.searchsorted(cdf, rng.random(n)), vocab - 1)]


def make_texts(rng, draw, n, terms):
    """n dicts of about `terms` distinct tokens (duplicate draws collapse, as max-pooling does)."""
    toks = draw(n * terms).reshape(n, terms).tolist()
    ws = rng.uniform(0.01, 0.4, (n, terms)).tolist()
    return [dict(zip(t, w)) for t, w in zip(toks, ws)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--terms", type=int, default=60, help="term draws per doc")
    ap.add_argument("--query-terms", type=int, default=12, help="term draws per query")
    ap.add_argument("--vocab", type=int, default=250_002)
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of term frequencies")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quantize", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--any-size", action="store_true", help="lift the segment-size rule (_PRUNE_MIN_DOCS, "
                    "_PRUNE_MIN_DOCS_PER_K), so the pruned column is MaxScore at any --docs and --k: how that rule "
                    "was chosen")
    a = ap.parse_args(argv)
    rule = f"segment-size rule: prune from {sparse._PRUNE_MIN_DOCS} docs and {sparse._PRUNE_MIN_DOCS_PER_K} * k"
    if a.any_size:
        sparse._PRUNE_MIN_DOCS = sparse._PRUNE_MIN_DOCS_PER_K = 0
        rule += " (lifted by --any-size)"
    elif a.docs < max(sparse._PRUNE_MIN_DOCS, sparse._PRUNE_MIN_DOCS_PER_K * a.k):
        rule += f" (so the default search below is exhaustive at {a.docs} docs, k={a.k})"

    rng = np.random.default_rng(a.seed)
    draw = zipf_sampler(rng, a.vocab, a.zipf)
    t0 = time.perf_counter()
    docs = make_texts(rng, draw, a.docs, a.terms)
    queries = make_texts(rng, draw, a.queries, a.query_terms)
    ids = rng.permutation(a.docs).astype(np.int64)
    print(commit_header() + "\n")
    print(rule)
    print(f"generated {a.docs} docs ({sum(map(len, docs)) / max(a.docs, 1):.1f} terms/doc) "
          f"and {a.queries} queries in {time.perf_counter() - t0:.2f}s")

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_sparse(Path(d), ids, docs, quantize=a.quantize)
        build = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(d).iterdir())
        r = open_sparse(Path(d))
        print(f"build {build:.2f}s  ({r.meta['n_postings']} postings, {r.meta['n_terms']} terms, "
              f"{size / 2**20:.1f} MiB, quantize={a.quantize})")

        # Both paths must agree exactly (ids and float32 scores) before any timing is reported.
        mismatch = 0
        for q in queries:
            (pi, ps), (ei, es) = r.search(q, a.k), r.search(q, a.k, prune=False)
            mismatch += not (np.array_equal(pi, ei) and np.array_equal(ps, es))
        print(f"pruned == exhaustive top-{a.k} on {a.queries - mismatch}/{a.queries} queries")
        if mismatch:
            sys.exit(f"MISMATCH: pruned search differs from exhaustive on {mismatch} queries")

        # Wall-clock latency, plus the thread's CPU time: on a shared machine the latter is the less
        # disturbed by other processes (it excludes time spent preempted).
        lat = {True: [], False: []}
        cpu = {True: [], False: []}
        hits = 0
        for rep in range(a.repeats):
            for q in queries:
                for prune in ((True, False) if rep % 2 == 0 else (False, True)):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    got, _ = r.search(q, a.k, prune=prune)
                    lat[prune].append(time.perf_counter() - t0)
                    cpu[prune].append(time.thread_time() - c0)
                    hits += len(got) if rep == 0 and prune else 0
        for prune, name in ((True, "pruned"), (False, "exhaustive")):
            ms, cpu_ms = np.array(lat[prune]) * 1e3, np.array(cpu[prune]) * 1e3
            print(f"search top-{a.k} {name:>10}: median {np.median(ms):.3f} ms  p95 {np.percentile(ms, 95):.3f} ms  "
                  f"mean {ms.mean():.3f} ms  (cpu median {np.median(cpu_ms):.3f} ms  p95 "
                  f"{np.percentile(cpu_ms, 95):.3f} ms)  over {len(ms)} calls  ({hits / max(a.queries, 1):.1f} hits/query)")
        print(f"median speed-up of pruning: {np.median(lat[False]) / np.median(lat[True]):.2f}x wall, "
              f"{np.median(cpu[False]) / np.median(cpu[True]):.2f}x cpu")
        del r


if __name__ == "__main__":
    main()
