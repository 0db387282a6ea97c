"""Fusion weights for every signal (dense, sparse, colbert, bm25), chosen on held-out data only (issue 20).

    python scripts/debian_heldout.py --pairs .../debian/corpus.jsonl --out heldout   # sets the heads never saw
    python benchmarks/sweep_fusion.py --datasets heldout/en,heldout/de,heldout/fr,heldout/ja,heldout/ru,heldout/zh,heldout/de-en

For each fused mode, each set is retrieved once per query with every candidate document kept, with its
per-signal scores (hsearch.evaluate.beir.run_modes(keep_all=True)); each fusion (raw weighted sum, min-max,
DBSF, RRF) and each point of the weight grid then re-fuses those scores in numpy, as `sweep_weights` does.
A point's score is its mean nDCG@10 over the sets (each set counts once). Exact for one-chunk documents,
which the Debian descriptions are; for longer ones a document keeps the chunk the default weights chose.
Documents are encoded by the reference (torch fp32). The winners are written by hand into the heads'
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
    eval_collection,
    fusion_columns,
    load_beir,
    run_modes,
    score,
    weight_grid,
)

MODES = ("dense+sparse", "dense+colbert", "dense+bm25", "all", "dense+sparse+bm25", "all+bm25")
SINGLE = ("dense", "sparse", "colbert", "bm25")
FUSIONS = (("weighted", "none"), ("weighted", "minmax"), ("weighted", "dbsf"), ("rrf", "none"))


def tables(col, data, mode: str) -> tuple[tuple[str, ...], dict]:
    """The mode's signals, and {query id: (per-signal score matrix [candidates, signals], document ids)} for
    every candidate document of `mode`."""
    hits = run_modes(col, data.queries, [mode], k=100, keep_all=True)[mode]
    plan = col.plan(next(iter(data.queries.values())), mode)
    return plan.signals, {q: (np.array([[h.scores[s] for s in plan.signals] for h in hs], np.float64).reshape(len(hs), len(plan.signals)),
                              [h.id for h in hs]) for q, hs in hits.items()}


def columns(table: dict, fusion: str, norm: str) -> dict:
    """Each query's candidates' signal scores as the fusion adds them up (normalised, or 1/(60 + rank) for RRF)."""
    return {q: fusion_columns(m, fusion, norm) for q, (m, _ids) in table.items()}


def fuse(m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fused scores [candidates, points], rounded so that sums which tie in exact arithmetic tie here too
    (ties go to the earlier candidate; the engine breaks them by chunk id, so tied rankings may differ)."""
    return np.round(m @ grid.T, 12)


def ndcg_grid(cols: dict, table: dict, qrels: dict, grid: np.ndarray) -> np.ndarray:
    """Mean nDCG@10 (linear gains, as trec_eval's ndcg_cut) of every weight vector (rows of `grid`) at once.
    Checked against ir_measures on each reported winner (`check`)."""
    total = np.zeros(len(grid))
    for q, rel in qrels.items():
        ideal = np.sort(np.array([g for g in rel.values() if g > 0], np.float64))[::-1][:10]
        idcg = (ideal / np.log2(np.arange(2, len(ideal) + 2))).sum()
        if q not in cols or idcg == 0 or not table[q][1]:
            continue
        gains = np.array([max(rel.get(d, 0), 0) for d in table[q][1]], np.float64)
        fused = fuse(cols[q], grid)
        order = np.argsort(-fused, axis=0, kind="stable")[:10]
        disc = 1 / np.log2(np.arange(2, order.shape[0] + 2))
        total += (gains[order] * disc[:, None]).sum(0) / idcg
    return total / len(qrels)


def check(table: dict, cols: dict, qrels: dict, w: np.ndarray, fast: float) -> None:
    """The fast nDCG of a winner must equal ir_measures' on the same ranking."""
    run = {}
    for q, (m, ids) in table.items():
        if ids:
            order = np.argsort(-fuse(cols[q], w[None])[:, 0], kind="stable")[:10]
            run[q] = {ids[i]: float(10 - r) for r, i in enumerate(order)}
    ref = score(run, qrels, {"nDCG@10": MEASURES["nDCG@10"]})["nDCG@10"]
    assert abs(ref - fast) < 1e-9, (w, ref, fast)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", required=True, help="comma-separated held-out BEIR folders (never evaluation sets)")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--limit-queries", type=int, default=200)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=None, help="markdown file to append the report to")
    a = ap.parse_args(argv)
    paths = [Path(p) for p in a.datasets.split(",") if p]
    short = [p.name for p in paths]  # a set is named by its folder, or by two levels where folders share a name
    sets = dict(zip(short if len(set(short)) == len(short) else ["/".join(p.parts[-2:]) for p in paths], paths))
    single, sweep, order, kept = {}, {}, {}, {}  # sweep[(mode, fusion, norm)][weights tuple] = {set: nDCG}
    for name, folder in sets.items():
        data = load_beir(folder, "test", a.limit_queries)
        col = eval_collection(data.corpus, a.model, precision="fp32", runtime="torch")
        hits = run_modes(col, data.queries, list(SINGLE), k=10)
        for s in SINGLE:
            single.setdefault(s, {})[name] = score({q: {h.id: 10.0 - r for r, h in enumerate(hs)} for q, hs in hits[s].items()},
                                                   data.qrels, {"nDCG@10": MEASURES["nDCG@10"]})["nDCG@10"]
        for mode in a.modes.split(","):
            signals, table = tables(col, data, mode)
            order[mode] = signals
            grid = np.array([[w[s] for s in signals] for w in weight_grid(signals)])
            for fusion, norm in FUSIONS:
                cols = columns(table, fusion, norm)
                got = ndcg_grid(cols, table, data.qrels, grid)
                kept[(name, mode, fusion, norm)] = (table, cols, data.qrels)
                points = sweep.setdefault((mode, fusion, norm), {})
                for w, v in zip(map(tuple, grid), got):
                    points.setdefault(w, {})[name] = float(v)
        print(name, "done", file=sys.stderr, flush=True)
    names = list(sets)
    mean = lambda d: sum(d[n] for n in names) / len(names)  # noqa: E731
    lines = [f"## {datetime.datetime.now():%Y-%m-%d %H:%M} fusion sweep, model {a.model} (held-out sets, "
             f"at most {a.limit_queries} queries each, nDCG@10; documents torch fp32)", "", commit_header(), "",
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
