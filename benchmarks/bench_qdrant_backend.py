"""Local engine vs the qdrant-edge backend on the same collection: query latency, quality, agreement.

    python benchmarks/bench_qdrant_backend.py --collection benchmarks/out/scifact-e5-f32 \\
        --dataset ../shared/datasets/scifact --work /tmp/qdrant-bench --out benchmarks/out/qdrant-backend.md

No re-encoding: the vectors of the existing local collection (`--collection`, built by `hsearch index`
or `hsearch eval`) are read back from its stores (FAISS reconstruct, the sparse forward index, the
token store decoded) and upserted into qdrant-edge shards through the backend's own sink; the copy
shares the collection's documents and BM25. Two copies: multi-vectors in Qdrant (MAX_SIM, float32),
and multi-vectors in hsearch's token store (the large-corpus path). Queries are encoded once; each
system then runs the same plans with `Collection.run(plan, encoded=...)`, so times cover retrieval,
re-scoring, fusion and the document lookup, not the encoder.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report import commit_header  # noqa: E402

from hsearch.backends import settle_config  # noqa: E402
from hsearch.backends.qdrant import QdrantSink  # noqa: E402
from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.engine import open_collection  # noqa: E402
from hsearch.evaluate.beir import as_run, load_beir, score  # noqa: E402
from hsearch.ingest.loaders import Document  # noqa: E402
from hsearch.storage.manifest import Manifest  # noqa: E402
from hsearch.types import Encoded  # noqa: E402

MODES = ["dense", "sparse", "dense+sparse", "dense+sparse/rrf", "all", "colbert", "dense+sparse+bm25"]


def copy_to_qdrant(src, dst: Path, multivector: bool, log) -> float:
    """A qdrant-edge copy of collection `src` (same chunk ids, documents, BM25); returns upsert seconds."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    snap = src.snapshot()
    m = snap.manifest
    config = replace(CollectionConfig.from_dict(m.config), backend="qdrant-edge", qdrant_multivector=multivector)
    config = settle_config(config, dst)
    with sqlite3.connect(src.folder / "docs.sqlite") as a, sqlite3.connect(dst / "docs.sqlite") as b:
        a.backup(b)  # with what is still in the WAL
    shutil.copytree(src.folder / "bm25", dst / "bm25")
    for seg in m.segments:  # documents of each chunk; the token store is shared when it stays local
        (dst / "segments" / seg.name).mkdir(parents=True)
        shutil.copy2(src.folder / "segments" / seg.name / "doc_rows.npy", dst / "segments" / seg.name)
        if not multivector:
            os.symlink((src.folder / "segments" / seg.name / "colbert").resolve(),
                       dst / "segments" / seg.name / "colbert")
    manifest = Manifest(generation=m.generation, config=config.to_dict(), encoder=m.encoder, segments=m.segments,
                        next_chunk_id=m.next_chunk_id, tombstones=m.tombstones)
    if m.tombstones:
        shutil.copy2(src.folder / m.tombstones, dst / m.tombstones)
    manifest.save(dst)
    docs = {}
    for row, doc_id, path, title, meta in snap.docs.db.execute("select row, doc_id, path, title, metadata from docs"):
        docs[row] = Document(id=doc_id, text="", title=title or "", path=path, metadata=json.loads(meta or "{}"),
                             hash="-")
    sink = QdrantSink(config, dst, manifest)
    sink.local.signals = set()  # the copy shares the source's token store instead of writing one
    t0 = time.perf_counter()
    for seg in snap.segments:
        stores = seg.stores
        ids_all = np.arange(seg.start, seg.end, dtype=np.int64)
        ids_all = ids_all[snap.live(ids_all)]
        for s in range(0, len(ids_all), 64):
            ids = ids_all[s:s + 64]
            rows = np.searchsorted(np.asarray(stores["dense"].ids), ids)
            dense = stores["dense"].index.reconstruct_batch(rows.astype(np.int64))
            tokens = stores["colbert"].tokens(ids) if multivector else [None] * len(ids)
            reps = [Encoded(dense=dense[i], sparse=stores["sparse"].doc(int(c)), colbert=tokens[i])
                    for i, c in enumerate(ids)]
            sink.write(dst, ids, reps, [docs[int(r)] for r in snap.doc_rows(ids)])
        log(f"  {dst.name}: {seg.name} upserted ({len(ids_all)} chunks, {time.perf_counter() - t0:.0f} s)")
    sink.commit(m.generation, np.empty(0, np.int64))
    upsert = time.perf_counter() - t0
    t1 = time.perf_counter()
    sink.close()  # optimize(): builds HNSW for segments above Qdrant's indexing threshold
    log(f"  {dst.name}: optimize {time.perf_counter() - t1:.1f} s")
    return upsert


def plan_of(col, mode: str, text: str, k: int):
    mode, _, fusion = mode.partition("/")
    return col.plan(text, mode=mode, k=k, fusion=fusion or "weighted")


def run_system(col, mode, qids, texts, encs, k, warmup):
    for i in range(min(warmup, len(qids))):
        col.run(plan_of(col, mode, texts[i], k), encoded=encs[i])
    times, hits = [], {}
    for i, q in enumerate(qids):
        plan = plan_of(col, mode, texts[i], k)
        t = time.perf_counter()
        hits[q] = col.run(plan, encoded=encs[i])
        times.append(time.perf_counter() - t)
    return np.array(times), hits


def same_up_to_ties(a, b, tol: float = 1e-6) -> bool:
    """Same scores (within tol) at every rank, and the same documents inside each run of tied scores."""
    if len(a) != len(b) or any(abs(x.score - y.score) > tol for x, y in zip(a, b)):
        return False
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[j].score - a[j + 1].score <= tol:
            j += 1
        if {h.id for h in a[i:j + 1]} != {h.id for h in b[i:j + 1]}:
            return False
        i = j + 1
    return True


def agreement(ref: dict, other: dict, n: int = 10) -> tuple[float, float, float]:
    """Shares of queries whose top-n is identical (ids, order), and identical but for the order inside
    runs of tied scores; the largest |score difference| among the identical ones."""
    same = ties = 0
    diff = 0.0
    for q, hits in ref.items():
        a, b = hits[:n], other[q][:n]
        if [h.id for h in a] == [h.id for h in b]:
            same += 1
            diff = max([diff] + [abs(x.score - y.score) for x, y in zip(a, b)])
        ties += [h.id for h in a] == [h.id for h in b] or same_up_to_ties(a, b)
    return same / max(len(ref), 1), ties / max(len(ref), 1), diff


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", required=True, help="an existing local hsearch collection of the dataset")
    ap.add_argument("--dataset", required=True, help="BEIR folder: queries.jsonl and qrels/<split>.tsv")
    ap.add_argument("--split", default="test")
    ap.add_argument("--work", default="/tmp/qdrant-bench", help="where the qdrant-edge copies go")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch/FAISS threads (default: theirs)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--reuse", action="store_true", help="keep copies already in --work")
    ap.add_argument("--out", default=None, help="append the report here (markdown)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    lines = []

    def log(msg):
        print(msg, flush=True)

    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    src = open_collection(args.collection)
    data = load_beir(args.dataset, args.split, args.limit_queries)
    qids = sorted(data.queries)
    texts = [data.queries[q] for q in qids]
    t = time.perf_counter()
    encs = src.encoder.encode_queries(texts, dense=True, sparse=True, colbert=True)
    log(f"{len(qids)} queries encoded in {time.perf_counter() - t:.1f} s")
    systems = {"local": src}
    build = {}
    for name, mv in (("qdrant-edge", True), ("qdrant-edge+local-tokens", False)):
        dst = work / name
        if not (args.reuse and (dst / "manifest.json").exists()):
            build[name] = copy_to_qdrant(src, dst, mv, log)
        systems[name] = open_collection(dst)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = []
    for mode in modes:
        ref = None
        for name, col in systems.items():
            if mode in ("all", "colbert") and not col.config.store_colbert:
                continue
            times, hits = run_system(col, mode, qids, texts, encs, args.k, args.warmup)
            metrics = score(as_run(hits), data.qrels)
            ref = hits if name == "local" else ref
            same, ties, diff = agreement(ref, hits) if name != "local" else (1.0, 1.0, 0.0)
            rows.append((mode, name, metrics["nDCG@10"], metrics["Recall@100"], 1000 * np.median(times),
                         1000 * np.percentile(times, 95), len(times) / times.sum(), same, ties, diff))
            log(f"{mode:18} {name:26} nDCG@10 {metrics['nDCG@10']:.4f}  p50 {1000 * np.median(times):.1f} ms  "
                f"top-10 identical {same:.3f}")
    m = src.snapshot().manifest
    lines.append(f"## Local engine vs qdrant-edge backend ({datetime.date.today()})\n")
    lines.append(commit_header() + "\n")
    lines.append(f"Collection `{args.collection}`: {src.snapshot().n_chunks} chunks, model {m.encoder.get('name')} "
                 f"(dim {m.encoder.get('dim')}), dense index {m.config.get('dense_index')}, multi-vector codec "
                 f"{m.config.get('colbert_codec')}; {len(qids)} {Path(args.dataset).name} {args.split} queries, k={args.k}, "
                 "depth 100. Same chunk ids, documents and BM25 in every system; queries encoded once.")
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), Python "
                 f"{platform.python_version()}; qdrant-edge-py {_version('qdrant-edge-py')}; threads "
                 f"{args.threads or 'default'}.")
    if build:
        lines.append("Upsert into qdrant-edge (read back from the local stores, then one sink write per 64 chunks): "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in build.items()) + ".")
    lines.append("\n| mode | system | nDCG@10 | Recall@100 | p50 ms | p95 ms | QPS (1 client) | top-10 = local's | "
                 "= up to ties | max score diff |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for mode, name, nd, rc, p50, p95, qps, same, ties, diff in rows:
        lines.append(f"| {mode} | {name} | {nd:.4f} | {rc:.4f} | {p50:.1f} | {p95:.1f} | {qps:.0f} | {same:.3f} | "
                     f"{ties:.3f} | {diff:.1e} |")
    lines.append("\n" + " ".join(["python", "benchmarks/bench_qdrant_backend.py"] + (argv or sys.argv[1:])) + "\n")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
