"""Fusion weights for a trained model, chosen on pairs held out of its training data (data.py: never trained on).

A model's heads change the scale of its sparse scores and how much each signal is worth, so the weights the
base model's heads were tuned for do not carry over (issue 20 measured an adapted model losing 0.037 nDCG@10
in the default mode with the planner's weights). The held-out pairs become a small retrieval set (their
queries; their documents the corpus), indexed by the new model in a temporary collection, and the weights are
chosen there as benchmarks/sweep_sparse_weight.py and sweep_fusion.py chose the shipped ones: the sparse
weight of raw sums beside dense's 0.4, and min-max weights for all four signals over the weight grid. A held-out
pair is one whose query and document no training pair has; one that repeats a trained pair in other words (a
translation of the same description) is not detected.
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np

from hsearch.query.plan import DEFAULT_WEIGHTS, model_weights

from .data import Pair

QUERIES = 200  # held-out queries asked, at most
DOCUMENTS = 2000  # held-out documents indexed, at most (every asked query's positives among them)
MIN_QUERIES = 20  # fewer held-out queries choose nothing: the model keeps the planner's weights
SPARSE_GRID = (0.0, 0.025, 0.05, 0.1, 0.2, 0.4)  # raw sums, beside dense 0.4 (as for the shipped heads)


def held_out_set(held: list[Pair], pool: dict[str, str], seed: int):
    """(queries {qid: text}, qrels {qid: {doc key: 1}}, documents {key: text}) drawn from the held-out pairs,
    seeded; None when they give fewer than MIN_QUERIES queries."""
    by_query: dict[str, set[str]] = {}
    for p in held:
        by_query.setdefault(p.query, set()).add(p.doc)
    texts = sorted(by_query)
    random.Random(seed).shuffle(texts)
    texts = texts[:QUERIES]
    if len(texts) < MIN_QUERIES:
        return None
    queries = {f"q{i}": t for i, t in enumerate(texts)}
    qrels = {qid: dict.fromkeys(sorted(by_query[t]), 1) for qid, t in queries.items()}
    keys = list(dict.fromkeys(k for rel in qrels.values() for k in rel))
    rest = sorted(set(pool) - set(keys))
    random.Random(seed).shuffle(rest)
    keys += rest[:max(0, DOCUMENTS - len(keys))]
    return queries, qrels, {k: pool[k] for k in keys}


def _nearest(scores: np.ndarray, points: np.ndarray, prior: np.ndarray) -> int:
    """The best-scoring point; among points tied with it, the one nearest the prior (L1), then the earlier. Held-out
    pairs a model finds too easy (a title repeated in its body) tie every point: the prior then stands."""
    tied = np.flatnonzero(scores >= scores.max() - 1e-9)
    return int(tied[np.argmin(np.abs(points[tied] - prior).sum(axis=1), axis=0)])


def choose_fusion(model_dir: Path, held: list[Pair], pool: dict[str, str], seed: int, prior: dict | None = None) -> dict | None:
    """The content of the model's fusion.json, chosen on the held-out pairs; None when there are too few.
    `prior`: the weights the model started from (its base model's recorded fusion weights), where ties go."""
    from hsearch.engine import open_collection
    from hsearch.evaluate.beir import chunk_tables, fusion_columns, grid_ndcg, weight_grid

    drawn = held_out_set(held, pool, seed)
    if drawn is None:
        return None
    queries, qrels, docs = drawn
    with tempfile.TemporaryDirectory(prefix="hsearch-train-fusion-") as tmp:
        # the reference runtime, as the shipped weights were chosen (and training has torch loaded already)
        col = open_collection(Path(tmp) / "held-out", create=True, model=str(model_dir), precision="fp32",
                              runtime="torch")
        col.add([{"id": key, "text": text} for key, text in docs.items()])
        _signals, raw = chunk_tables(col, queries, "dense+sparse")  # columns: dense, sparse
        grid = np.array([[0.4, w] for w in SPARSE_GRID])
        got = grid_ndcg({q: m for q, (m, _d) in raw.items()}, {q: d for q, (_m, d) in raw.items()}, qrels, grid)
        prior_raw = {**DEFAULT_WEIGHTS, **model_weights(prior)}  # its sparse weight, as beside dense 0.4 here
        sparse = SPARSE_GRID[_nearest(got, grid, np.array([0.4, prior_raw["sparse"] * 0.4 / prior_raw["dense"]]))]
        signals, table = chunk_tables(col, queries, "all+bm25")
        points = weight_grid(signals)
        grid_mm = np.array([[w[s] for s in signals] for w in points])
        cols = {q: fusion_columns(m, "weighted", "minmax") for q, (m, _d) in table.items()}
        got_mm = grid_ndcg(cols, {q: d for q, (_m, d) in table.items()}, qrels, grid_mm)
        start = {**DEFAULT_WEIGHTS, **(model_weights(prior, "weighted", "minmax") or {})}
        start = np.array([start[s] for s in signals]) / sum(start[s] for s in signals)
        best = _nearest(got_mm, grid_mm, start)
        tied = int((got_mm >= got_mm.max() - 1e-9).sum())
        alone = {s: float(got_mm[points.index({t: float(t == s) for t in signals})]) for s in signals}
    return {
        "weights": {"sparse": sparse},
        "weights_minmax": points[best],
        "applies_to": "weights: raw weighted sums (normalisation none); weights_minmax: min-max fusion (the default "
                      "whenever bm25 is in the mode); DBSF and RRF keep the planner's weights",
        "chosen_on": f"{len(queries)} queries and {len(docs)} documents of pairs held out of this model's training data "
                     f"(never trained on), indexed by this model; seed {seed}"
                     + (f"; {tied} min-max grid points tied for the best, the tie going to the one nearest the weights "
                        "the model started from" if tied > 1 else ""),
        "heldout_ndcg10": {"dense+sparse raw, sparse weight beside dense 0.4": dict(zip(map(str, SPARSE_GRID),
                                                                                       map(float, got))),
                           "all+bm25 min-max, chosen": float(got_mm[best]),
                           **{f"{s} alone": v for s, v in alone.items()}},
    }
