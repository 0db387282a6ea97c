"""Is one mode's nDCG@10 really above or below another's? Per-query differences, paired.

    HSEARCH_PRECISION=fp32 HSEARCH_RUNTIME=torch python benchmarks/paired_test.py --model e5-small \\
        --modes all+bm25,colbert,dense --normalize minmax --weights dense=0.333333,sparse=0.083333,colbert=0.416667,bm25=0.166667 \\
        --datasets ../shared/datasets/xquad-r/zh --cross ../shared/datasets/xquad-r/de:../shared/datasets/xquad-r/en \\
        --limit-queries 300

The first mode is compared with each other one on the same queries: the mean of the per-query nDCG@10
differences (first minus other), its 95% bootstrap interval (queries resampled with replacement, seeded),
and the two-sided p-value of a paired t-test (scipy). A difference whose interval holds 0 is one these
queries cannot tell from chance. Weights, normalisation and the low-coverage rule apply to every fused mode
as in quality.py (a one-signal mode ignores them). `--cross Q:C` as in quality.py. Nothing is tuned here.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header  # noqa: E402
from quality import cross_folder  # noqa: E402

from hsearch.evaluate.beir import NO_HIT, as_run, eval_collection, load_beir, run_modes  # noqa: E402


def per_query_ndcg(hits: dict, qrels: dict) -> np.ndarray:
    """nDCG@10 of every query in `qrels` (sorted ids; 0 for a query with no hit), as `score` aggregates it."""
    import ir_measures
    from ir_measures import nDCG

    run = as_run(hits)
    run = {q: run.get(q) or {NO_HIT: 0.0} for q in qrels}
    got = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    return np.array([got.get(q, 0.0) for q in sorted(qrels)])


def compare(a: np.ndarray, b: np.ndarray, rounds: int, seed: int) -> dict:
    """Mean of a - b, its bootstrap 95% interval and the paired t-test's p-value."""
    from scipy import stats

    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (rounds, len(d)))].mean(axis=1)
    p = float(stats.ttest_rel(a, b).pvalue) if np.any(d != 0) else 1.0
    return {"mean": float(d.mean()), "low": float(np.percentile(means, 2.5)), "high": float(np.percentile(means, 97.5)),
            "p": p, "better": int((d > 0).sum()), "worse": int((d < 0).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--modes", default="all+bm25,colbert", help="the first is compared with each of the others")
    ap.add_argument("--datasets", default="", help="comma-separated BEIR folders")
    ap.add_argument("--cross", default="", help="comma-separated QUERIES_DIR:CORPUS_DIR pairs")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--normalize", default=None, choices=["none", "minmax", "dbsf"])
    ap.add_argument("--low-coverage", default=None, metavar="T:WEIGHTS")
    ap.add_argument("--bootstrap", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="markdown file to append the table to")
    a = ap.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if len(modes) < 2:
        ap.error("--modes needs at least two modes: the first is compared with the others")
    options = {k: v for k, v in (("weights", a.weights), ("normalize", a.normalize), ("low_coverage", a.low_coverage))
               if v is not None}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = [(Path(d), f"{Path(d).parent.name}/{Path(d).name}") for d in a.datasets.split(",") if d]
        for pair in filter(None, a.cross.split(",")):
            q, c = pair.split(":")
            folders.append((cross_folder(Path(q), Path(c), Path(tmp)), f"{Path(q).name}->{Path(c).name}"))
        for folder, name in folders:
            data = load_beir(folder, a.split, a.limit_queries)
            col = eval_collection(data.corpus, a.model)
            hits = run_modes(col, data.queries, modes, k=100, **options)
            scores = {m: per_query_ndcg(hits[m], data.qrels) for m in modes}
            for other in modes[1:]:
                rows.append((name, other, len(data.qrels), scores[modes[0]].mean(), scores[other].mean(),
                             compare(scores[modes[0]], scores[other], a.bootstrap, a.seed)))
            print(f"{name}: done", file=sys.stderr)
    first = modes[0]
    lines = [f"## {datetime.datetime.now():%Y-%m-%d %H:%M} paired nDCG@10: {first} against each other mode "
             f"(model {a.model}, split {a.split}{f', first {a.limit_queries} queries' if a.limit_queries else ''})", "",
             commit_header(), "", "    python benchmarks/paired_test.py " + " ".join(sys.argv[1:]), "",
             f"Options for fused modes: {options or 'none (the model defaults)'}. Bootstrap: {a.bootstrap} resamples, "
             f"seed {a.seed}.", "",
             f"| dataset | other mode | queries | {first} | other | mean difference | 95% interval | p (paired t) "
             "| queries better / worse |", "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for name, other, n, s1, s2, c in rows:
        lines.append(f"| {name} | {other} | {n} | {s1:.4f} | {s2:.4f} | {c['mean']:+.4f} | [{c['low']:+.4f}, "
                     f"{c['high']:+.4f}] | {c['p']:.3f} | {c['better']} / {c['worse']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
