"""BM25 alone, per analyzer (hsearch/index/analyzers.py), next to bm25s: nDCG@10 on BEIR-layout folders.

    python benchmarks/bm25_analyzers.py --analyzers en_stem,auto,words,pieces --limit-queries 300 \\
        --datasets ../shared/datasets/xquad-r/ar,../shared/datasets/xquad-r/de,... \\
        --cross ../shared/datasets/xquad-r/de:../shared/datasets/xquad-r/en,... --out benchmarks/out/bm25.md
    python benchmarks/bm25_analyzers.py --quick --datasets BEIR_FOLDER     # the tests' small run

Each analyzer gets a collection of its own, built and searched by the engine itself (`--mode bm25`):
BM25 needs no encoder, so the test double `hsearch.testing.FakeEncoder` fills the vector stores
(never queried here) and a run costs seconds, not an encoder pass. Chunks are cut by its word
tokenizer (512 words), not by the model's: equal for corpora of short passages like XQuAD-R's, not
for long documents. `--cross Q:C` asks the queries of folder Q against folder C (as in
benchmarks/quality.py). The `auto` column's analyzer choices per dataset are printed below the table.
bm25s: its default English stopwords and PyStemmer's English stemmer where installed, as in quality.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header, package_versions  # noqa: E402
from quality import DATASETS, bm25s_scores, cross_folder  # noqa: E402

from hsearch import open_collection  # noqa: E402
from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.evaluate.beir import load_beir, score  # noqa: E402
from hsearch.testing import FakeEncoder  # noqa: E402

METRIC = "nDCG@10"


def bm25_run(folder: Path, corpus_dir: Path, analyzer: str, work: Path, split: str, limit: int | None, k: int,
             built: dict) -> tuple[dict, dict]:
    """(scores, analyzer counts) of hsearch's BM25 with `analyzer` on the queries of `folder`; one
    collection per (corpus, analyzer), shared by the cross-lingual pairs that ask it."""
    data = load_beir(folder, split, limit)
    key = (corpus_dir.resolve(), analyzer)
    if key not in built:
        col = open_collection(work / f"c{len(built)}", create=True, encoder=FakeEncoder(dim=8, colbert_dim=8),
                              config=CollectionConfig(bm25_analyzer=analyzer, store_colbert=False))
        col.index(data.corpus)
        built[key] = col
    col = built[key]
    run = {}
    for qid, text in data.queries.items():
        hits = col.search(text, mode="bm25", k=k)
        run[qid] = {h.id: float(len(hits) - r) for r, h in enumerate(hits)}  # rank scores, as quality.py
    return score(run, data.qrels), col.info().get("bm25_analyzers", {})


def _name(p: Path) -> str:
    return str(p.resolve().relative_to(DATASETS)) if p.resolve().is_relative_to(DATASETS) else p.name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", required=True, help="comma-separated BEIR folders")
    ap.add_argument("--cross", default="", help="comma-separated QUERIES_DIR:CORPUS_DIR pairs")
    ap.add_argument("--analyzers", default="en_stem,auto", help="comma-separated analyzer names")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--no-bm25s", action="store_true", help="skip the bm25s peer")
    ap.add_argument("--quick", action="store_true", help="the first 5 queries, analyzers en_stem and auto")
    ap.add_argument("--out", default=None, help="markdown file to write the report to")
    a = ap.parse_args(argv)
    analyzers = [x for x in a.analyzers.split(",") if x]
    if a.quick:
        analyzers, a.limit_queries = ["en_stem", "auto"], a.limit_queries or 5
    datasets = [Path(p) for p in a.datasets.split(",") if p]
    pairs = [tuple(Path(x) for x in p.split(":", 1)) for p in a.cross.split(",") if p]
    rows, notes, built = [], [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hsearch-bm25-") as tmp:
        tmp = Path(tmp)
        jobs = [(_name(p), p, p) for p in datasets]
        jobs += [(f"{q.parent.name}/{q.name}->{c.name}", cross_folder(q, c, tmp), c) for q, c in pairs]
        for name, folder, corpus_dir in jobs:
            print(f"{name} ...", file=sys.stderr, flush=True)
            row = {}
            for analyzer in analyzers:
                row[analyzer], counts = bm25_run(folder, corpus_dir, analyzer, tmp, a.split, a.limit_queries, a.k, built)
                if analyzer == "auto" and folder is corpus_dir:
                    notes.append(f"{name}: " + ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda x: -x[1])))
            if not a.no_bm25s:
                peer = bm25s_scores(folder, a.split, a.limit_queries, a.k)
                if peer is not None:
                    row["bm25s"] = peer
            rows.append((name, row))
    systems = list(dict.fromkeys(s for _n, row in rows for s in row))
    n = f"first {a.limit_queries} queries" if a.limit_queries else "all queries"
    lines = [f"BM25 {METRIC} per analyzer ({n}, split {a.split}, k={a.k}); {time.perf_counter() - t0:.0f} s", "",
             commit_header(), "", package_versions(["tantivy", "tokenizers", "bm25s", "PyStemmer"]), "",
             "| dataset | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
    for name, row in rows:
        lines.append(f"| {name} | " + " | ".join(f"{row[s][METRIC]:.4f}" if s in row else "-" for s in systems) + " |")
    if notes:
        lines += ["", "Word analyzers `auto` chose (chunks per analyzer; pieces also take every CJK, Thai, Indic run):", ""]
        lines += [f"- {x}" for x in notes]
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
