"""Build time and exact top-k latency of the sparse inverted index on synthetic Zipf-like data.

    python benchmarks/bench_sparse.py --docs 100000 --terms 60 --vocab 250002 --queries 200 --k 10 --repeats 5

Term ranks follow p(r) ~ 1 / (r + 1)^zipf, mapped to random token ids, so a few terms have posting
lists covering most docs (the hard case for an exhaustive scorer). Weights are uniform in [0.01, 0.4],
about the range BGE-M3's sparse head produces.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    draw = zipf_sampler(rng, a.vocab, a.zipf)
    t0 = time.perf_counter()
    docs = make_texts(rng, draw, a.docs, a.terms)
    queries = make_texts(rng, draw, a.queries, a.query_terms)
    ids = rng.permutation(a.docs).astype(np.int64)
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

        lat, hits = [], 0
        for rep in range(a.repeats):
            for q in queries:
                t0 = time.perf_counter()
                got, _ = r.search(q, a.k)
                lat.append(time.perf_counter() - t0)
                hits += len(got) if rep == 0 else 0
        lat = np.array(lat) * 1e3
        print(f"search top-{a.k}: median {np.median(lat):.2f} ms  p95 {np.percentile(lat, 95):.2f} ms  "
              f"mean {lat.mean():.2f} ms  over {len(lat)} calls  ({hits / max(a.queries, 1):.1f} hits/query)")
        del r


if __name__ == "__main__":
    main()
