"""Fusion weights for every signal (dense, sparse, colbert, bm25), chosen on held-out data only (issue 20).

    python scripts/debian_heldout.py --pairs .../debian/corpus.jsonl --out heldout   # sets the heads never saw
    python benchmarks/sweep_fusion.py --datasets heldout/en,heldout/de,heldout/fr,heldout/ja,heldout/ru,heldout/zh,heldout/de-en

Long documents (issue 20, item 3): the train queries of a long-document set, over a collection built already
(QMSum's passages; never its test queries):

    python benchmarks/sweep_fusion.py --datasets ../shared/datasets/qmsum --split train --limit-queries 0 \
        --collection ../shared/datasets/qmsum=benchmarks/out/qmsum-e5

For each fused mode, each set is retrieved once per query with every candidate chunk kept, with its
per-signal scores (hsearch.evaluate.beir.chunk_tables); each fusion (raw weighted sum, min-max, DBSF, RRF)
and each point of the weight grid then re-fuses those scores in numpy, a document scoring as its best chunk
(`grid_ndcg`, as `sweep_weights` does): exact but for ties, for documents of any length. A point's score is
its mean nDCG@10 over the sets (each set counts once). Documents are encoded by the reference (torch fp32)
unless --collection names a collection built already. The winners are written by hand into the heads'
fusion.json with the command and commit of the run; the evaluation sets are scored with them afterwards.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header, emit  # noqa: E402

from hsearch.evaluate.beir import (  # noqa: E402
    MEASURES,
    chunk_tables,
    eval_collection,
    fusion_columns,
    grid_ndcg,
    load_beir,
    run_modes,
    score,
    weight_grid,
)

MODES = ("dense+sparse", "dense+colbert", "dense+bm25", "all", "dense+sparse+bm25", "all+bm25")
SINGLE = ("dense", "sparse", "colbert", "bm25")
FUSIONS = (("weighted", "none"), ("weighted", "minmax"), ("weighted", "dbsf"), ("rrf", "none"))


def columns(table: dict, fusion: str, norm: str) -> dict:
    """Each query's candidates' signal scores as the fusion adds them up (normalised, or 1/(60 + rank) for RRF)."""
    return {q: fusion_columns(m, fusion, norm) for q, (m, _ids) in table.items()}


def check(table: dict, cols: dict, qrels: dict, w: np.ndarray, fast: float) -> None:
    """The fast nDCG of a winner must equal ir_measures' on the engine's ranking: chunks best first (ties: the
    smaller chunk id, which the tables' row order is), each document where its best chunk is."""
    run = {}
    for q, (_m, ids) in table.items():
        fused = np.round(cols[q] @ w, 12)
        ranked = []
        for i in sorted(range(len(ids)), key=lambda i: (-fused[i], i)):
            if ids[i] not in ranked:
                ranked.append(ids[i])
        run[q] = {d: float(10 - r) for r, d in enumerate(ranked[:10])}
    ref = score(run, qrels, {"nDCG@10": MEASURES["nDCG@10"]})["nDCG@10"]
    assert abs(ref - fast) < 1e-9, (w, ref, fast)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", required=True, help="comma-separated held-out BEIR folders (never evaluation sets)")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--limit-queries", type=int, default=200, help="first N queries of each set (0: all)")
    ap.add_argument("--split", default="test", help="the qrels split to tune on (held-out sets: test; a benchmark's "
                    "own sets: train or dev, never its test split)")
    ap.add_argument("--collection", action="append", default=[], metavar="SET=FOLDER",
                    help="use a collection built already for the set at this dataset path")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=None, help="markdown file to append the report to")
    a = ap.parse_args(argv)
    paths = [Path(p) for p in a.datasets.split(",") if p]
    short = [p.name for p in paths]  # a set is named by its folder, or by two levels where folders share a name
    sets = dict(zip(short if len(set(short)) == len(short) else ["/".join(p.parts[-2:]) for p in paths], paths))
    built = dict(c.split("=", 1) for c in a.collection)
    single, sweep, order, kept = {}, {}, {}, {}  # sweep[(mode, fusion, norm)][weights tuple] = {set: nDCG}
    for name, folder in sets.items():
        data = load_beir(folder, a.split, a.limit_queries or None)
        if str(folder) in built:
            from hsearch.engine import open_collection

            col = open_collection(built[str(folder)])
        else:
            col = eval_collection(data.corpus, a.model, precision="fp32", runtime="torch")
        hits = run_modes(col, data.queries, list(SINGLE), k=10)
        for s in SINGLE:
            single.setdefault(s, {})[name] = score({q: {h.id: 10.0 - r for r, h in enumerate(hs)} for q, hs in hits[s].items()},
                                                   data.qrels, {"nDCG@10": MEASURES["nDCG@10"]})["nDCG@10"]
        for mode in a.modes.split(","):
            signals, table = chunk_tables(col, data.queries, mode)
            order[mode] = signals
            docs = {q: ids for q, (_m, ids) in table.items()}
            grid = np.array([[w[s] for s in signals] for w in weight_grid(signals)])
            for fusion, norm in FUSIONS:
                cols = columns(table, fusion, norm)
                got = grid_ndcg(cols, docs, data.qrels, grid)
                kept[(name, mode, fusion, norm)] = (table, cols, data.qrels)
                points = sweep.setdefault((mode, fusion, norm), {})
                for w, v in zip(map(tuple, grid), got):
                    points.setdefault(w, {})[name] = float(v)
        print(name, "done", file=sys.stderr, flush=True)
    names = list(sets)
    mean = lambda d: sum(d[n] for n in names) / len(names)  # noqa: E731
    lines = [f"## {datetime.datetime.now():%Y-%m-%d %H:%M} fusion sweep, model {a.model} ("
             f"{a.split} split, {f'at most {a.limit_queries}' if a.limit_queries else 'all'} queries each, nDCG@10; "
             f"documents {'of the given collections' if built else 'torch fp32'})", "", commit_header(), "",
             "| mode | fusion | best weights | " + " | ".join(names) + " | mean |", "|---|---|---|" + "---:|" * (len(names) + 1)]
    for s in SINGLE:
        lines.append(f"| {s} | - | - | " + " | ".join(f"{single[s][n]:.4f}" for n in names) + f" | {mean(single[s]):.4f} |")
    best_all = []
    for (mode, fusion, norm), points in sweep.items():
        key, by_set = max(points.items(), key=lambda kv: mean(kv[1]))  # ties: the earlier grid point
        for n in names:
            check(*kept[(n, mode, fusion, norm)][:2], kept[(n, mode, fusion, norm)][2], np.array(key), by_set[n])
        signals = order[mode]
        label = fusion if fusion == "rrf" else f"weighted, {norm}"
        wtxt = ", ".join(f"{s}={v:g}" for s, v in zip(signals, key))
        lines.append(f"| {mode} | {label} | {wtxt} | " + " | ".join(f"{by_set[n]:.4f}" for n in names)
                     + f" | {mean(by_set):.4f} |")
        best_all.append((mean(by_set), mode, label, wtxt))
    lines += ["", "Best per mean: " + "; ".join(f"{m} ({f}; {w}) {v:.4f}" for v, m, f, w in sorted(best_all, reverse=True)[:5])]
    report = "\n".join(lines) + "\n"
    emit(report, a.out)


if __name__ == "__main__":
    main()
