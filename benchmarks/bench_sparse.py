"""Build time and exact top-k latency of the sparse inverted index on synthetic Zipf-like data.

    python benchmarks/bench_sparse.py --docs 100000 --terms 60 --vocab 250002 --queries 200 --k 10 --repeats 5

Term ranks follow p(r) ~ 1 / (r + 1)^zipf, mapped to random token ids, so a few terms have posting
lists covering most docs (the hard case for an exhaustive scorer). Weights are uniform in [0.01, 0.4],
about the range BGE-M3's sparse head produces.

Each query runs through four paths of `SparseReader.search`, in turn, so all see the same machine load:
- default: what `search` does (its rules choose between the three below);
- compiled: the numba loop alone (sparse_kernel.py; the default's exhaustive path);
- pruned: NumPy alone, as where numba does not import: MaxScore pruning where the segment is large
  enough (with --any-size always), else NumPy's exhaustive scoring;
- exhaustive: NumPy's exhaustive scoring (`prune=False`).
The script first checks that all four return identical top-k ids and float32 scores (exit status 1
otherwise), then reports median / p95 latency of each (wall clock, and the thread's CPU time). Before
that it times the process's first compiled search: numba's import and the loop's loading (or compiling).
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

from hsearch.index import compiled, sparse  # noqa: E402
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

        pruning_from = sparse._PRUNE_MIN_POSTINGS_COMPILED

        def search(path, q):
            compiled.use_compiled(path != "pruned")
            sparse._PRUNE_MIN_POSTINGS_COMPILED = 10**18 if path == "compiled" else pruning_from
            return r.search(q, a.k, prune=path != "exhaustive")

        def postings(q):  # the query's posting-list lengths, summed: the work of an exhaustive scorer
            t = np.array(sorted(q), np.int64)
            at = np.minimum(np.searchsorted(r.terms, t), len(r.terms) - 1)
            at = at[np.asarray(r.terms)[at] == t]
            return int((np.asarray(r.term_ptr)[at + 1] - np.asarray(r.term_ptr)[at]).sum())

        t0 = time.perf_counter()
        search("compiled", queries[0])
        print(f"first compiled search of this process: {time.perf_counter() - t0:.3f} s (numba's import, the loop's "
              "loading or compiling)")
        print(f"query postings: median {np.median([postings(q) for q in queries]):.0f}")
        paths = ("default", "compiled", "pruned", "exhaustive")
        # Every path must agree exactly (ids and float32 scores) before any timing is reported.
        mismatch = 0
        for q in queries:
            (ei, es), *others = (search(path, q) for path in paths[::-1])
            mismatch += not all(np.array_equal(i, ei) and np.array_equal(s, es) for i, s in others)
        print(f"default == compiled == pruned == exhaustive top-{a.k} on {a.queries - mismatch}/{a.queries} queries")
        if mismatch:
            sys.exit(f"MISMATCH: the search paths differ on {mismatch} queries")
        # Wall-clock latency, plus the thread's CPU time: on a shared machine the latter is the less
        # disturbed by other processes (it excludes time spent preempted).
        lat = {p: [] for p in paths}
        cpu = {p: [] for p in paths}
        hits = 0
        for rep in range(a.repeats):
            for i, q in enumerate(queries):
                for path in paths[i % 4:] + paths[:i % 4]:  # each path first as often as the others
                    t0, c0 = time.perf_counter(), time.thread_time()
                    got, _ = search(path, q)
                    lat[path].append(time.perf_counter() - t0)
                    cpu[path].append(time.thread_time() - c0)
                    hits += len(got) if rep == 0 and path == "exhaustive" else 0
        for path in paths:
            ms, cpu_ms = np.array(lat[path]) * 1e3, np.array(cpu[path]) * 1e3
            print(f"search top-{a.k} {path:>10}: median {np.median(ms):.3f} ms  p95 {np.percentile(ms, 95):.3f} ms  "
                  f"mean {ms.mean():.3f} ms  (cpu median {np.median(cpu_ms):.3f} ms  p95 "
                  f"{np.percentile(cpu_ms, 95):.3f} ms)  over {len(ms)} calls  ({hits / max(a.queries, 1):.1f} hits/query)")
        for path in ("default", "compiled", "pruned"):
            print(f"median speed-up of {path} over exhaustive: {np.median(lat['exhaustive']) / np.median(lat[path]):.2f}x "
                  f"wall, {np.median(cpu['exhaustive']) / np.median(cpu[path]):.2f}x cpu")
        del r


if __name__ == "__main__":
    main()
