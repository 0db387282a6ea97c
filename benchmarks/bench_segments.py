"""Query latency as segments pile up, after the merge policy, and after `optimize`; deleted bytes; HNSW
recall@10 against exact search for each ef_search (issue 17, items 2 and 3).

    python benchmarks/bench_segments.py --out benchmarks/out          # 50 adds of 2,000 chunks (100k)
    python benchmarks/bench_segments.py --quick                       # smoke run: 10 adds of 200 chunks

Synthetic data (`harness/synthetic.py`) and `hsearch.testing.FakeEncoder` (no transformer), as in
bench_engine.py. Four collections of the same chunks:
  one commit    every chunk in one `add`, then `optimize` (one segment: the reference)
  50 segments   one `add` per batch with the merge policy switched off (what every commit used to leave)
  policy        one `add` per batch with the merge policy on (the default)
  optimized     `policy`, then 10% of the documents deleted, then `hsearch optimize`
Latency: `Collection.run` with pre-encoded queries (no encoding), 1 thread, warm-up + --repeats passes,
median of the per-pass p50. Recall@10: dense top-10 of the one-segment collection (HNSW from 10k
vectors) against exact inner-product search over the same vectors.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and faiss load their thread pools

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from harness.report import commit_header, fmt_ms, machine, write_report  # noqa: E402
from harness.synthetic import make_corpus, make_queries  # noqa: E402
from harness.timing import time_queries  # noqa: E402

from hsearch import merge  # noqa: E402
from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.engine import open_collection  # noqa: E402
from hsearch.testing import FakeEncoder  # noqa: E402

MODES = ("dense", "sparse", "dense+sparse", "all", "bm25")


def _disk(path: Path) -> int:
    """Bytes of a folder, or of a file with its SQLite companions (-wal, -shm)."""
    files = path.rglob("*") if path.is_dir() else path.parent.glob(path.name + "*")
    return sum(p.stat().st_size for p in files if p.is_file())


def build(folder: Path, docs, enc, batches: int, policy: bool) -> tuple[object, float]:
    shutil.rmtree(folder, ignore_errors=True)
    cfg = CollectionConfig(model=enc.spec.name, chunk_tokens=256, chunk_overlap=0, commit_every=10**9)
    col = open_collection(folder, create=True, config=cfg, encoder=enc)
    factor = merge.FACTOR
    merge.FACTOR = merge.FACTOR if policy else 10**9  # benchmark-side switch: no merges at all
    t = time.perf_counter()
    try:
        per = -(-len(docs) // batches)
        for b in range(batches):
            col.add(docs[b * per:(b + 1) * per])
    finally:
        merge.FACTOR = factor
    return col, time.perf_counter() - t


def latency(col, queries, encs, repeats: int) -> dict:
    out = {}
    for mode in MODES:
        plans = [col.plan(q, mode, k=10, depth=100) for q in queries]
        p50, _p95, _r = time_queries(lambda i, plans=plans: col.run(plans[i], encs[i]), len(queries), repeats)
        out[mode] = p50
    return out


def recall(col, encs, efs, repeats: int) -> list[tuple]:
    seg = col.snapshot().segments
    readers = [s.stores["dense"] for s in seg]
    vecs = np.concatenate([r.index.reconstruct_n(0, len(r)) for r in readers])
    ids = np.concatenate([np.asarray(r.ids) for r in readers])
    q = np.stack([e.dense for e in encs]).astype(np.float32)
    exact = ids[np.argsort(-(q @ vecs.T), axis=1, kind="stable")[:, :10]]
    kind = readers[0].meta["kind"]
    rows = []
    for ef in efs:
        plans = [col.plan("x", "dense", k=10, depth=10, ef_search=ef) for _ in encs]
        found = [col.snapshot().local.search("dense", e.dense, 10, col.snapshot().scope((), None, ef))[0]
                 for e in encs]
        r = float(np.mean([len(set(f.tolist()) & set(x.tolist())) / 10 for f, x in zip(found, exact)]))
        p50, _p95, _ = time_queries(lambda i: col.run(plans[i], encs[i]), len(encs), repeats)
        rows.append((ef, kind, r, p50))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--per", type=int, default=2000, help="chunks per add (one document is one chunk)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--delete", type=float, default=0.1, help="share of documents deleted before optimize")
    ap.add_argument("--quick", action="store_true", help="10 adds of 200 chunks, 20 queries")
    ap.add_argument("--out", default=None, help="folder for segments.md (printed only when not given)")
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.per, args.queries, args.repeats = 10, 200, 20, 1
    import faiss

    faiss.omp_set_num_threads(1)
    n = args.batches * args.per
    work = Path(args.work or tempfile.mkdtemp(prefix="hsearch-segments-"))
    texts, vocab, word, offsets, counts = make_corpus(n, seed=0)
    queries = make_queries(args.queries, vocab, word, offsets, counts, seed=1)
    docs = [{"id": f"s{i:07d}", "text": t} for i, t in enumerate(texts)]
    enc = FakeEncoder(dim=384, colbert_dim=128, colbert_tokens=48, rank=48, seed=0)
    encs = enc.encode_queries(queries)
    rows, notes = [], []
    try:
        one, t_one = build(work / "one", docs, enc, 1, policy=True)
        t = time.perf_counter()
        one.optimize()
        t_opt_one = time.perf_counter() - t
        rows.append(("one commit, then optimize", one.info()["segments"], t_one + t_opt_one,
                     latency(one, queries, encs, args.repeats)))
        rec = recall(one, encs, (16, 32, 64, 128, 160, 192, 256), args.repeats)
        many, t_many = build(work / "many", docs, enc, args.batches, policy=False)
        rows.append((f"{args.batches} adds, no merging", many.info()["segments"], t_many,
                     latency(many, queries, encs, args.repeats)))
        del many
        shutil.rmtree(work / "many", ignore_errors=True)
        pol, t_pol = build(work / "policy", docs, enc, args.batches, policy=True)
        rows.append((f"{args.batches} adds, merge policy (default)", pol.info()["segments"], t_pol,
                     latency(pol, queries, encs, args.repeats)))
        gone = [d["id"] for d in docs[::int(round(1 / args.delete))]]
        pol.delete(gone)
        b0 = {p: _disk(work / "policy" / p) for p in ("segments", "docs.sqlite", "bm25")}
        t = time.perf_counter()
        pol.optimize()
        t_opt = time.perf_counter() - t
        b1 = {p: _disk(work / "policy" / p) for p in ("segments", "docs.sqlite", "bm25")}
        rows.append((f"... then {len(gone):,} documents deleted and `optimize` ({t_opt:.1f} s)",
                     pol.info()["segments"], None, latency(pol, queries, encs, args.repeats)))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    ref = rows[0][3]
    lines = [f"## Segments: latency as commits pile up, merged, optimized ({n:,} synthetic chunks)", "",
             commit_header(), "", machine(), "",
             f"Command: `python benchmarks/bench_segments.py{' --quick' if args.quick else ''}` "
             f"({args.batches} adds of {args.per:,} chunks; {len(queries)} queries; 1 thread; "
             f"{time.strftime('%Y-%m-%d')}).", "",
             "p50 per query in ms, excluding query encoding (ratio to the one-segment collection):", "",
             "| collection | segments | build s | " + " | ".join(MODES) + " |",
             "|---|---|---|" + "---|" * len(MODES)]
    for name, segs, secs, lat in rows:
        cells = [f"{fmt_ms(lat[m])} ({lat[m] / ref[m]:.2f}x)" for m in MODES]
        lines.append(f"| {name} | {segs} | {'' if secs is None else f'{secs:.1f}'} | " + " | ".join(cells) + " |")
    lines += ["", f"Bytes on disk before and after `optimize` ({len(gone):,} of {n:,} documents deleted):", "",
              "| part | before | after |", "|---|---|---|"]
    lines += [f"| {p} | {b0[p] / 2**20:.1f} MiB | {b1[p] / 2**20:.1f} MiB |" for p in b0]
    lines += ["", "Dense recall@10 against exact search, one-segment collection, per `ef_search`:", "",
              "| ef_search | index | recall@10 | dense p50 |", "|---|---|---|---|"]
    lines += [f"| {ef} | {kind} | {r:.3f} | {fmt_ms(p)} |" for ef, kind, r, p in rec]
    lines += notes
    write_report("\n".join(lines) + "\n", Path(args.out) if args.out else None, "segments.md")


if __name__ == "__main__":
    main()
