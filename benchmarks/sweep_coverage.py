"""Lexical weights by the query's coverage, chosen on held-out data only (issue 20: one signal unreliable for a query).

    python scripts/debian_heldout.py --pairs .../debian/corpus.jsonl --out heldout --cross fr,ja,ru,zh
    python benchmarks/sweep_coverage.py --datasets heldout/en,heldout/de,heldout/fr,heldout/ja,heldout/ru,heldout/zh,\\
        heldout/de-en,heldout/fr-en,heldout/ja-en,heldout/ru-en,heldout/zh-en

Min-max fusion maps every signal's candidates onto [0, 1], whatever its evidence: a BM25 list that matched only
a name or a number of a query in another language gets the same spread as one that matched all its words. The
coverage of a query (`BM25Index.coverage`: the share of its BM25 terms the collection holds) says how much of
it the lexical signals can see. Two kinds of rule, each against `fixed` (the mode's held-out min-max weights,
the model's fusion.json, for every query):
- scaling: the lexical weights multiplied per query by the coverage (or its square), or set to 0 below 0.5;
- two regimes: below a coverage threshold t (0.25, 0.5, 0.75) a second set of weights, the point of the weight
  grid that is best for the mean over all sets (`two_regimes`); at or above t the fixed weights.
Per query every candidate chunk and its per-signal scores are kept (hsearch.evaluate.beir.chunk_tables) and each
rule re-fuses them in numpy (`grid_ndcg`, one query at a time, since each query has its own weights). Documents
are encoded by the reference (torch fp32). A set's score is its mean nDCG@10 (a query without candidates counts
0); a rule is chosen by the mean over all given sets. The `--cross` sets are what makes the choice possible:
they are the only held-out queries in another language than their documents.
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

from hsearch.encode.loader import _fusion_weights, resolve_model_dir  # noqa: E402
from hsearch.evaluate.beir import chunk_tables, eval_collection, fusion_columns, grid_ndcg, load_beir, weight_grid  # noqa: E402
from hsearch.query.plan import DEFAULT_WEIGHTS, model_weights  # noqa: E402

# (label, lexical signals scaled, power of the coverage; a power of None is a gate: weight 0 below 0.5)
RULES = (("fixed", (), 1.0), ("bm25 x c", ("bm25",), 1.0), ("bm25 x c^2", ("bm25",), 2.0),
         ("bm25, sparse x c", ("bm25", "sparse"), 1.0), ("bm25, sparse x c^2", ("bm25", "sparse"), 2.0),
         ("bm25, sparse: 0 below c 0.5", ("bm25", "sparse"), None))


def scaled_weights(weights: dict, coverage: float | None, lexical: tuple, power: float) -> dict:
    """`weights` with each lexical signal's multiplied by coverage ** power (unchanged where it is unknown)."""
    if coverage is None:
        return weights
    return {s: w * coverage ** power if s in lexical else w for s, w in weights.items()}


def rule_weights(weights: dict, lexical: tuple, power, c: float | None) -> dict:
    if power is None:
        return {s: (0.0 if s in lexical and c is not None and c < 0.5 else w) for s, w in weights.items()}
    return scaled_weights(weights, c, lexical, power)


def two_regimes(kept: dict, signals: tuple, base: dict, thresholds=(0.25, 0.5, 0.75)) -> dict:
    """For each threshold t: the grid point that, used for the queries whose coverage is below t (the base
    weights above), gives the best mean over the sets; with its per-set nDCG@10 and how many queries it takes."""
    grid_w = weight_grid(signals)
    grid = np.array([[w[s] for s in signals] for w in grid_w])
    b = np.array([[base[s] for s in signals]])
    per = {name: [(c, grid_ndcg({0: cols}, {0: docs}, {0: rel}, grid), grid_ndcg({0: cols}, {0: docs}, {0: rel}, b)[0])
                  for c, cols, docs, rel in queries] for name, (queries, _n) in kept.items()}
    out = {}
    for t in thresholds:
        sums = {name: sum(np.where(c is not None and c < t, g, b0) for c, g, b0 in per[name]) / kept[name][1]
                for name in per}
        total = sum(sums.values()) / len(sums)
        i = int(np.argmax(total))  # ties: the earlier grid point
        below = sum(c is not None and c < t for name in per for c, _g, _b in per[name])
        out[t] = (grid_w[i], below, {name: float(v[i]) for name, v in sums.items()})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", required=True, help="comma-separated held-out BEIR folders (never evaluation sets)")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--mode", default="all+bm25")
    ap.add_argument("--limit-queries", type=int, default=200)
    ap.add_argument("--out", default=None, help="markdown file to append the report to")
    a = ap.parse_args(argv)
    paths = [Path(p) for p in a.datasets.split(",") if p]
    names = [p.name for p in paths]  # a set is named by its folder, or by two levels where folders share a name
    names = names if len(set(names)) == len(names) else ["/".join(p.parts[-2:]) for p in paths]
    got = {r[0]: {} for r in RULES}
    cover, kept = {}, {}  # kept[set] = [(coverage, fusion columns, chunk documents, qrels) per query]
    for name, folder in zip(names, paths):
        data = load_beir(folder, "test", a.limit_queries or None)
        col = eval_collection(data.corpus, a.model, precision="fp32", runtime="torch")
        signals, table = chunk_tables(col, data.queries, a.mode)
        # the model's own min-max weights, else the planner's (as a plan takes them)
        own = model_weights(_fusion_weights(resolve_model_dir(a.model)), "weighted", "minmax") or {}
        base = {s: {**DEFAULT_WEIGHTS, **own}[s] for s in signals}
        bm25 = col.snapshot().bm25
        cov = {q: bm25.coverage(text) for q, text in data.queries.items()}
        cover[name] = np.array([c for c in cov.values() if c is not None])
        kept[name] = [(cov[q], fusion_columns(table[q][0], "weighted", "minmax"), table[q][1], rel)
                      for q, rel in data.qrels.items() if q in table]
        n_queries = len(data.qrels)  # a query without candidates counts 0, as in grid_ndcg
        for label, lexical, power in RULES:
            total = 0.0
            for c, cols, docs, rel in kept[name]:
                w = rule_weights(base, lexical, power, c)
                total += grid_ndcg({0: cols}, {0: docs}, {0: rel}, np.array([[w[s] for s in signals]]))[0]
            got[label][name] = total / n_queries
        kept[name] = (kept[name], n_queries)
        print(name, "done", file=sys.stderr, flush=True)
    regimes = two_regimes(kept, signals, base)
    mean = lambda d: sum(d.values()) / len(d)
    lines = [(f"## {datetime.datetime.now():%Y-%m-%d %H:%M} lexical weights by coverage, {a.mode}, min-max, model "
             f"{a.model} (test split of held-out sets, at most {a.limit_queries} queries each, nDCG@10; documents torch fp32)"),
             "", commit_header(), "", "Base weights: " + ", ".join(f"{s}={v:g}" for s, v in base.items()), "",
             "| rule | " + " | ".join(names) + " | mean |", "|---|" + "---:|" * (len(names) + 1)]
    for label, *_ in RULES:
        lines.append(f"| {label} | " + " | ".join(f"{got[label][n]:.4f}" for n in names) + f" | {mean(got[label]):.4f} |")
    lines += ["", "| coverage | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, f in (("mean", np.mean), ("10th percentile", lambda x: np.percentile(x, 10)),
                     ("median", np.median), ("90th percentile", lambda x: np.percentile(x, 90))):
        lines.append(f"| {label} | " + " | ".join(f"{f(cover[n]):.2f}" for n in names) + " |")
    best = max(RULES, key=lambda r: mean(got[r[0]]))[0]  # ties: the earlier rule (fixed first)
    lines += ["", f"Best scaling rule by the mean: {best} ({mean(got[best]):.4f}; fixed {mean(got['fixed']):.4f})", "",
              ("Two regimes: the base weights at coverage >= t, below it the grid point (hsearch.evaluate.beir.weight_grid) "
              "best for the mean over all sets:"), "",
              "| t | weights below t | queries below t | " + " | ".join(names) + " | mean |",
              "|---|---|---:|" + "---:|" * (len(names) + 1)]
    for t, (w, below, by_set) in regimes.items():
        lines.append(f"| {t:g} | " + ", ".join(f"{s}={v:g}" for s, v in w.items()) + f" | {below} | "
                     + " | ".join(f"{by_set[n]:.4f}" for n in names) + f" | {mean(by_set):.4f} |")
    emit("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
