"""Retrieval quality of hsearch's modes on BEIR-layout datasets, with bm25s as a BM25 peer.

    python benchmarks/quality.py --model e5-small --modes bm25,dense,sparse,dense+sparse,all \\
        --datasets ../shared/datasets/scifact,../shared/datasets/xquad-r/de \\
        --cross ../shared/datasets/xquad-r/de:../shared/datasets/xquad-r/en --out benchmarks/RESULTS.md
    python benchmarks/quality.py --quick --model minilm        # smoke run: xquad-r en and de->en, 20 queries

Prints a markdown table (dataset, system, nDCG@10, Recall@100, MRR@10) and appends it to --out
(default benchmarks/RESULTS.md).
`--cross Q:C` scores the queries of folder Q against the corpus and qrels of folder C. XQuAD-R's
question ids are the same in every language and its qrels point at that language's sentence ids,
so "de:en" is LAReQA's German-question -> English-sentence retrieval. The pair shares C's cached
collection (see hsearch.evaluate.beir.eval_collection), so only the queries are new work.
bm25s (if installed: pip install bm25s) uses its default English stopwords, plus PyStemmer's
English stemmer when that is installed; it has no analyzer for Chinese or Thai.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report import commit_header  # noqa: E402

from hsearch.evaluate.beir import evaluate, load_beir, score  # noqa: E402
from hsearch.index import multivector  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT = [DATASETS / "scifact", DATASETS / "cranfield", DATASETS / "xquad-r" / "en", DATASETS / "xquad-r" / "de"]
DEFAULT_CROSS = [(DATASETS / "xquad-r" / "de", DATASETS / "xquad-r" / "en")]
# One index of ~1,200 one-sentence docs serves both quick datasets (the pair shares en's collection).
QUICK = [DATASETS / "xquad-r" / "en"]
QUICK_CROSS = [(DATASETS / "xquad-r" / "de", DATASETS / "xquad-r" / "en")]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
COLUMNS = ("nDCG@10", "Recall@100", "MRR@10")


def cross_folder(queries_dir: Path, corpus_dir: Path, root: Path) -> Path:
    """A BEIR folder of symlinks: queries of one folder, corpus and qrels of another."""
    folder = root / f"{queries_dir.name}-{corpus_dir.name}"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "queries.jsonl").symlink_to((queries_dir / "queries.jsonl").resolve())
    (folder / "corpus.jsonl").symlink_to((corpus_dir / "corpus.jsonl").resolve())
    for f in (corpus_dir / "qrels").glob("*.tsv"):
        (folder / "qrels" / f.name).symlink_to(f.resolve())
    return folder


def bm25s_scores(folder: Path, split: str, limit: int | None, k: int) -> dict | None:
    """nDCG@10 / Recall@100 / MRR@10 of bm25s on the same queries, or None when bm25s is missing."""
    try:
        import bm25s
    except ImportError:
        return None
    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    except ImportError:
        stemmer = None
    data = load_beir(folder, split, limit)
    ids, texts = [], []
    with open(data.corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                ids.append(str(rec["_id"]))
                texts.append(f"{rec.get('title') or ''} {rec.get('text') or ''}".strip())
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(data.queries)
    tokens = bm25s.tokenize([data.queries[q] for q in qids], stemmer=stemmer, show_progress=False)
    docs, scores = model.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
    # rank-derived scores, as hsearch's own runs use, so both are tie-broken the same way
    run = {q: {ids[d]: float(len(row) - r) for r, d in enumerate(row)} for q, row in zip(qids, docs.tolist())}
    return score(run, data.qrels)


def table(rows: list[tuple[str, str, dict]]) -> str:
    lines = ["| dataset | system | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {d} | {s} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + " |" for d, s, r in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="comma-separated BEIR folders (default: scifact, cranfield, "
                    "xquad-r en and de)")
    ap.add_argument("--cross", default=None, help="comma-separated QUERIES_DIR:CORPUS_DIR pairs (default with the default "
                    "datasets: xquad-r de:en; none when --datasets is given)")
    ap.add_argument("--modes", default="bm25,dense,sparse,dense+sparse,all")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--collection", action="append", default=[], metavar="DATASET=DIR",
                    help="score DATASET (a folder given in --datasets) on an existing collection DIR, e.g. one "
                    "built with --colbert-codec float32; repeatable")
    ap.add_argument("--no-bm25s", action="store_true", help="skip the bm25s peer")
    ap.add_argument("--weights", default=None, help="fusion weights for every fused mode, e.g. dense=0.4,colbert=0.4 "
                    "(default: the collection's, then the planner's)")
    ap.add_argument("--normalize", default=None, choices=["none", "minmax", "dbsf"],
                    help="score normalisation of every fused mode (default: the planner's)")
    ap.add_argument("--low-coverage", default=None, metavar="T:WEIGHTS",
                    help="weights of every fused mode with bm25 for a query the collection holds under T of the BM25 "
                    "terms of, e.g. 0.5:colbert=1, or off (default: the collection's model's, where it recorded one)")
    ap.add_argument("--whole-weight", type=float, default=None,
                    help="modes with @both: weight of the whole-document score (default: the planner's 0.5)")
    ap.add_argument("--maxsim", default="int8", help="comma-separated MaxSim kernels for int8 token vectors on "
                    "the CPU: int8 (integer products, the query rounded to int8: the default) and/or float (float32 "
                    "products, as before); with both, every mode is scored with each and labelled")
    ap.add_argument("--quick", action="store_true", help="xquad-r en and de->en, first 20 queries")
    ap.add_argument("--out", default=None, help="markdown file to append the table to (default: "
                    "benchmarks/RESULTS.md; --quick appends only when --out is given: a smoke run is no result)")
    a = ap.parse_args(argv)

    datasets = [Path(p) for p in a.datasets.split(",")] if a.datasets else DEFAULT
    if a.cross:
        cross = [tuple(Path(x) for x in pair.split(":", 1)) for pair in a.cross.split(",") if pair]
    else:  # the default pairs go with the default datasets only
        cross = [] if a.datasets else DEFAULT_CROSS
    if a.quick:
        datasets, cross, a.limit_queries = QUICK, QUICK_CROSS, a.limit_queries or 20
    modes = [m for m in a.modes.split(",") if m]
    kernels = [k for k in a.maxsim.split(",") if k]
    if not kernels or set(kernels) - {"int8", "float"}:
        ap.error(f"--maxsim takes int8 and/or float, got {a.maxsim!r}")
    given = dict(item.split("=", 1) for item in a.collection)
    collections = {Path(d).resolve(): Path(c) for d, c in given.items()}
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="hsearch-quality-") as tmp:
        jobs = [(str(p.resolve().relative_to(DATASETS)) if p.resolve().is_relative_to(DATASETS) else p.name, p) for p in datasets]
        jobs += [(f"{q.parent.name}/{q.name}->{c.name}", cross_folder(q, c, Path(tmp))) for q, c in cross]
        for name, folder in jobs:
            print(f"{name}: hsearch {','.join(modes)} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            col = collections.get(folder.resolve())
            for kernel in kernels:
                multivector.INT8_PRODUCTS = kernel == "int8"
                result = evaluate(folder, modes, model=None if col else a.model, split=a.split, k=a.k,
                                  limit_queries=a.limit_queries, collection_dir=col, weights=a.weights,
                                  normalize=a.normalize, low_coverage=a.low_coverage,
                                  **({} if a.whole_weight is None else {"whole_weight": a.whole_weight}))
                label = f" [maxsim {kernel}]" if len(kernels) > 1 else ""
                rows += [(name, f"hsearch {m}{label}", r) for m, r in result.items()]
            notes.append(f"{name}: hsearch {time.perf_counter() - t0:.1f}s (index build or re-sync + all modes)")
            if not a.no_bm25s:
                t0 = time.perf_counter()
                peer = bm25s_scores(folder, a.split, a.limit_queries, a.k)
                if peer is not None:
                    rows.append((name, "bm25s", peer))
                    notes.append(f"{name}: bm25s {time.perf_counter() - t0:.1f}s")
    n = f"first {a.limit_queries} queries" if a.limit_queries else "all queries"
    fused = "".join(f" {k}={v}" for k, v in (("weights", a.weights), ("normalize", a.normalize),
                                              ("low_coverage", a.low_coverage), ("whole_weight", a.whole_weight),
                                              ("maxsim", a.maxsim if a.maxsim != "int8" else None)) if v)
    head = (f"## {datetime.datetime.now():%Y-%m-%d %H:%M} model={a.model} split={a.split} k={a.k} ({n}){fused}\n\n"
            + commit_header() + "\n")
    report = head + "\n" + table(rows) + "\n\n" + "\n".join(f"- {x}" for x in notes) + "\n"
    print(report)
    out = a.out or (None if a.quick else RESULTS)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
