"""hsearch against peers on the same data in the same run: index time, size on disk per store, query latency.

    python benchmarks/bench_engine.py --synthetic 100000 --out benchmarks/out             # synthetic, 100k chunks
    python benchmarks/bench_engine.py --collection benchmarks/out/scifact-e5-f32 \\
        --dataset ../shared/datasets/scifact --out benchmarks/out                         # an existing collection
    python benchmarks/bench_engine.py --quick --out /tmp/bench                            # smoke run, < 1 minute

Synthetic: a REAL hsearch collection (writer, segments, docs.sqlite, tantivy) built from Zipf-distributed
made-up words (`harness/synthetic.py`) with `hsearch.testing.FakeEncoder`, a stand-in for the transformer with the encoder interface
(hashed words -> dense / sparse / per-token vectors), plugged in with `open_collection(encoder=...)`.
Queries: 3 of a random chunk's rarest words + 2 words drawn from the Zipf distribution.

Existing collection (--collection): the stored vectors are read back (FAISS reconstruct, the sparse
forward index, the decoded token store, chunk texts from docs.sqlite), so every peer indexes exactly
what hsearch holds. hsearch's own index time excluding encoding is measured by rebuilding the same
chunks into a scratch collection with `harness.build.ReplayEncoder`, which hands back the stored vectors. Queries:
the dataset's test queries, encoded once with the collection's own model; latency including encoding
runs `Collection.search` with that model.

Latency: one warm-up pass over all queries, then --repeats timed passes (GC off while timing); p50 and
p95 over queries per pass, the median over passes is reported. Same k and candidate depth everywhere
(k=10; each first stage retrieves top --depth=100; colbert alone re-ranks the dense top-200). faiss,
torch, BLAS and qdrant search threads are all set to --threads. hsearch rows time `Collection.run`:
planner, first stages, union re-scored by every signal, fusion, grouping by document and snippet
lookup in SQLite; "hsearch store call" rows time the bare store search for comparison.
"""
from __future__ import annotations

import os
import sys


def _threads_from_argv(argv) -> str:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# Thread counts of the BLAS / OpenMP runtimes are read when they load: set them before numpy does.
_THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from engine_compare import ALL_PEERS, HSEARCH_MODES, Bench, report  # noqa: E402
from engine_peers import QuerySet  # noqa: E402
from harness.beir_queries import load_test_queries  # noqa: E402
from harness.build import ReplayEncoder, build_hsearch, read_back, store_sizes  # noqa: E402
from harness.report import fmt_ms, write_report  # noqa: E402
from harness.synthetic import make_corpus, make_queries  # noqa: E402
from harness.timing import time_queries  # noqa: E402

from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.index.dense import EF_SEARCH  # noqa: E402
from hsearch.testing import FakeEncoder  # noqa: E402


def run_synthetic(args, work: Path):
    from hsearch.engine import open_collection

    n = args.synthetic
    name = args.name or (f"quick-synthetic-{n // 1000}k" if args.quick else f"synthetic-{n // 1000}k")
    b = Bench(args, name)
    b.log(f"generating {n} chunks")
    texts, vocab, word, offsets, counts = make_corpus(n, seed=args.seed)
    queries = make_queries(args.queries, vocab, word, offsets, counts, seed=args.seed + 1)
    enc = FakeEncoder(dim=args.dim, colbert_dim=args.colbert_dim, colbert_tokens=args.colbert_tokens,
                           rank=args.dense_rank, seed=args.seed)
    commit_every = -(-n // args.segments)
    config = CollectionConfig(model=enc.spec.name, chunk_tokens=256, chunk_overlap=0, dense_index=args.dense_index,
                              colbert_codec=args.colbert_codec, commit_every=commit_every)
    folder = work / "hsearch"
    b.log("hsearch build")
    phases = build_hsearch(folder, [{"id": f"s{i:07d}", "text": t} for i, t in enumerate(texts)], enc, config)
    col = open_collection(folder, encoder=enc)
    optimized = None
    before = len(col.snapshot().segments)
    if args.segments == 1 and before > 1:  # commits are cut by text size too (writer.MAX_COMMIT_CHARS)
        b.log(f"hsearch optimize: {before} segments into one, as --segments 1 asks")
        t0 = time.perf_counter()
        col.optimize()
        optimized = (before, time.perf_counter() - t0)
    sizes = store_sizes(folder)
    kinds = sorted({s.stores["dense"].meta["kind"] for s in col.snapshot().segments})
    part_notes = {"dense": f"FAISS {'/'.join(kinds)} (HNSW: M=32, efConstruction=200, efSearch={EF_SEARCH})",
                  "colbert": f"{args.colbert_codec}, {args.colbert_dim} dims",
                  "bm25": f"tantivy, analyzer {col.config.bm25_analyzer}",
                  "sparse": "inverted + forward index, float32", "docs sqlite": "chunk texts, documents, metadata",
                  "hit columns": "what a hit shows, beside the vectors (snippets cut in 'other')",
                  "encode": "FakeEncoder (not a transformer; excluded from the total below)",
                  "other": "chunking, hashing, manifest, segment bookkeeping files",
                  "fsync": "fsync of the segment folder"}
    enc_s = phases.pop("encode")
    total = phases.pop("total")
    for part in ("dense", "sparse", "colbert", "bm25", "docs sqlite", "hit columns", "fsync", "other"):
        b.index_rows.append(("hsearch", part, phases.get(part), sizes.get(part) if part != "fsync" else None,
                             part_notes.get(part, "")))
    b.index_rows.append(("hsearch", "**total, excluding encoding**", total - enc_s, sizes["total"],
                         f"{len(col.snapshot().segments)} segment(s), commit_every={commit_every}"))
    b.index_rows.append(("hsearch", "encode (synthetic)", enc_s, None, part_notes["encode"]))
    if optimized:
        b.index_rows.append(("hsearch", "optimize (not in the total)", optimized[1], None,
                             f"the build's {optimized[0]} segments merged into {len(col.snapshot().segments)}"))
    b.log("reading the stored vectors back")
    corpus, doc_of = read_back(col)
    encs = enc.encode_queries(queries)
    qs = QuerySet(texts=queries, dense=np.stack([e.dense for e in encs]), sparse=[e.sparse for e in encs],
                  colbert=[e.colbert for e in encs])
    b.nq = len(queries)
    b.run(col, corpus, doc_of, qs, encs, work)
    n_tok = int(corpus.cb_offsets[-1]) if corpus.cb_offsets is not None else 0
    data = [f"Data: synthetic, {n:,} chunks (one per document) of {40}-{120} made-up words drawn with Zipf "
            f"frequencies (s=1.0) from a 50,000-word vocabulary ({sum(len(t) for t in texts) / n:.0f} characters "
            f"per chunk on average); {len(queries)} queries of 5 words (3 rare words of a random chunk + 2 "
            "Zipf draws). Encoder: FakeEncoder (hashed words, no transformer): dense "
            f"{args.dim} dims (words in a rank-{min(args.dense_rank, args.dim)} subspace, 10% isotropic noise); sparse {corpus.sp_ptr[-1] / n:.1f} terms per chunk; colbert {args.colbert_dim} dims, "
            f"one vector per word for the first {args.colbert_tokens} words ({n_tok / n:.1f} per chunk, "
            f"{n_tok:,} in all), stored {args.colbert_codec}. Peers index the vectors read back from the "
            "hsearch collection (decoded token vectors for colbert)."]
    write_report(report(b, f"hsearch vs peers: {name}", data), args.out, f"engine-{name}.md")
    col = None
    gc.collect()


def run_collection(args, work: Path):
    import torch

    from hsearch.engine import open_collection

    src = Path(args.collection)
    name = args.name or src.name
    b = Bench(args, name)
    col = open_collection(src)
    info = col.info()
    b.log(f"{info['chunks']} chunks, {info['documents']} documents, model {info['model']}")
    queries = load_test_queries(Path(args.dataset), args.split, args.queries if args.queries_given else None)
    b.log(f"{len(queries)} {args.split} queries; loading the model")
    enc_model = col.encoder
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    encs = enc_model.encode_queries(queries)
    batch_s = time.perf_counter() - t
    b.log("reading the stored vectors back")
    corpus, doc_of = read_back(col)
    # hsearch's write path on these exact vectors, timed (no model run): a scratch rebuild
    b.log("hsearch rebuild from the stored vectors (ReplayEncoder)")
    replay = ReplayEncoder(corpus, col._manifest.encoder)
    cfg = {**col.config.to_dict(), "chunk_tokens": 1_000_000, "chunk_overlap": 0, "commit_every": 10**9}
    phases = build_hsearch(work / "hsearch-replay", [{"id": str(int(i)), "text": t} for i, t in zip(corpus.ids, corpus.texts)],
                           replay, CollectionConfig.from_dict(cfg))
    sizes = store_sizes(src)
    replay_sizes = store_sizes(work / "hsearch-replay")
    shutil.rmtree(work / "hsearch-replay", ignore_errors=True)
    m = col.config
    kinds = sorted({s.stores["dense"].meta["kind"] for s in col.snapshot().segments})
    notes = {"dense": f"FAISS {'/'.join(kinds)}", "sparse": "inverted + forward index",
             "colbert": f"{m.colbert_codec}, {info['heads'].get('colbert', '')}", "bm25": f"tantivy, analyzer {m.bm25_analyzer}",
             "docs sqlite": "chunk texts, documents, metadata", "hit columns": "what a hit shows, beside the vectors",
             "other": "manifest, locks, bookkeeping",
             "fsync": "fsync of the segment folder"}
    for part in ("dense", "sparse", "colbert", "bm25", "docs sqlite", "hit columns", "fsync", "other"):
        b.index_rows.append(("hsearch", part, phases.get(part), sizes.get(part) if part != "fsync" else None,
                             notes[part]))
    b.index_rows.append(("hsearch", "**total, excluding encoding**", phases["total"] - phases["encode"],
                         sizes["total"], "rebuild of the same chunks from their stored vectors (ReplayEncoder); "
                         f"the rebuilt copy takes {replay_sizes['total'] / 2**20:.1f} MiB"))
    b.index_note = args.index_note
    qs = QuerySet(texts=queries, dense=np.stack([e.dense for e in encs]), sparse=[e.sparse for e in encs],
                  colbert=[e.colbert for e in encs])
    b.nq = len(queries)
    b.run(col, corpus, doc_of, qs, encs, work)
    # ---- including query encoding, the real model
    rows = [("encode only: encode_queries([query]), all three representations",
             lambda i: enc_model.encode_queries([queries[i]])),
            ("encode only: dense alone", lambda i: enc_model.encode_queries([queries[i]], sparse=False, colbert=False))]
    for label, mode, opts in HSEARCH_MODES:
        if label in args.encode_modes.split(","):
            o = {"depth": args.depth, **opts}
            rows.append((f"hsearch {label}", lambda i, md=mode, o=o: col.search(queries[i], md, k=args.k, **o)))
    sec = ["### Query latency including query encoding (the collection's model, "
           f"{info['model']}, CPU, torch threads={args.threads})", "",
           f"`Collection.search(text)`: encode the query, then the same plan as above. {len(queries)} queries, "
           f"warm-up + {args.repeats} passes (encoding all {len(queries)} queries in one batched call took "
           f"{batch_s:.2f} s).", "", "| what | p50 (ms) | p95 (ms) |", "|---|---:|---:|"]
    for label, fn in rows:
        b.log(f"with encoding: {label}")
        p50, p95, _ = time_queries(fn, len(queries), args.repeats)
        sec.append(f"| {label} | {fmt_ms(p50)} | {fmt_ms(p95)} |")
    b.extra.append(sec)
    n_tok = int(corpus.cb_offsets[-1]) if corpus.cb_offsets is not None else 0
    data = [f"Data: the hsearch collection `{src}`: {info['documents']:,} documents, {info['chunks']:,} chunks, model "
            f"{info['model']} (dense {corpus.dense.shape[1]} dims; sparse {corpus.sp_ptr[-1] / len(corpus):.1f} terms "
            f"per chunk; colbert {n_tok:,} token vectors of {corpus.cb_flat.shape[1] if n_tok else 0} dims, stored "
            f"{m.colbert_codec}). Heads: {info['heads']}. Queries: {len(queries)} {args.split} queries of "
            f"`{args.dataset}`, encoded once with the collection's model. Peers index the vectors read back from the "
            "collection."]
    write_report(report(b, f"hsearch vs peers: {name}", data), args.out, f"engine-{name}.md")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=None, help="chunks of the synthetic collection (default "
                    "100000 when --collection is not given)")
    ap.add_argument("--collection", default=None, help="an existing hsearch collection to benchmark")
    ap.add_argument("--dataset", default=str(HERE.parents[1] / "shared" / "datasets" / "scifact"),
                    help="BEIR folder with the queries of --collection (queries.jsonl, qrels/SPLIT.tsv)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--queries", type=int, default=None, help="queries (synthetic: default 200; --collection: all "
                    "of the split unless given)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--peers", default=None, help=f"comma-separated from {', '.join(ALL_PEERS)}; 'all' (default; "
                    "--quick: all but milvus-lite, whose in-process server start dominates a smoke run) or 'none'")
    ap.add_argument("--no-qdrant-colbert", action="store_true", help="qdrant-edge without multivectors")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--dense-rank", type=int, default=48, help="synthetic: dimension of the dense word subspace")
    ap.add_argument("--colbert-dim", type=int, default=128)
    ap.add_argument("--colbert-tokens", type=int, default=48)
    ap.add_argument("--colbert-codec", default="int8")
    ap.add_argument("--dense-index", default="auto")
    ap.add_argument("--segments", type=int, default=1, help="synthetic: commits (segments) the collection is built in; "
                    "1: also `optimize`d into one when commits were cut by text size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encode-modes", default="dense,sparse,dense+sparse,all,dense+sparse+bm25",
                    help="--collection: hsearch modes also timed including query encoding")
    ap.add_argument("--index-note", default=None, help="--collection: how long the original `hsearch index` took "
                    "(including encoding) and where that figure comes from")
    ap.add_argument("--quick", action="store_true", help="2,000 synthetic chunks, 10 queries (smoke run)")
    ap.add_argument("--name", default=None, help="report name: OUT/engine-NAME.md")
    ap.add_argument("--out", default=None, help="folder for engine-NAME.md (printed only when not given)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    args.queries_given = args.queries is not None
    if args.peers is None:
        args.peers = ",".join(p for p in ALL_PEERS if p != "milvus-lite") if args.quick else "all"
    if args.quick:
        args.synthetic = args.synthetic or 2000
        args.queries = args.queries or 10
    if args.synthetic is None and args.collection is None:
        args.synthetic = 100_000
    args.queries = args.queries or 200
    args.out = Path(args.out) if args.out else None

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="hsearch-bench-", dir=os.environ.get("TMPDIR"))
        work = Path(tmp)
    try:
        if args.synthetic:
            run_synthetic(args, work / "synthetic")
        if args.collection:
            run_collection(args, work / "collection")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
