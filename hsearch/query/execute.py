"""Run a plan over a snapshot: first-stage retrieval, union, re-scoring, fusion, grouping by document.

Retrieval and re-scoring go through the snapshot's sources (hsearch/backends/base.py), whatever holds
the vectors: hsearch's segment stores, BM25, or a Qdrant collection."""
from __future__ import annotations

import numpy as np

from hsearch.types import Encoded, Hit

from .fusion import rrf, weighted
from .plan import Plan

SNIPPET_CHARS = 240


def retrieve(snapshot, signal: str, query, k: int, allow) -> tuple[np.ndarray, np.ndarray]:
    """Top-k chunk ids of one signal in the local stores (benchmarks time the stores alone with it)."""
    if signal == "bm25":
        return snapshot.bm25.search(query, k, allow)
    return snapshot.local.search(signal, query, k, allow)


def rescore(snapshot, signal: str, query, ids: np.ndarray) -> np.ndarray:
    if signal == "bm25":
        return snapshot.bm25.score(query, ids)
    return snapshot.local.score(signal, query, ids)


def gather(sources, first: dict, depth: int, score: dict, scope) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The union of every first-stage signal's top-`depth` and every scoring signal's score on it.

    Each signal goes to the first source that holds it. Sources are asked in order, each with the
    candidates found so far; one that saw a smaller union then scores the newcomers, so the last source
    (a remote one) is asked once and the result equals retrieving everything, then scoring everything.
    """
    owner = {}
    for src in sources:
        for s in src.signals:
            owner.setdefault(s, src)
    for s in [*first, *score]:
        if s not in owner:  # an empty collection, or a signal no store holds
            return np.empty(0, np.int64), {}
    cand, parts = np.empty(0, np.int64), []
    for src in sources:
        mine_first = {s: q for s, q in first.items() if owner[s] is src}
        mine_score = {s: q for s, q in score.items() if owner[s] is src}
        if mine_first or mine_score:
            ids, scores = src.collect(mine_first, depth, mine_score, scope, cand)
            cand = np.union1d(cand, ids)
            parts.append((src, mine_score, ids, scores))
    table = {}
    for src, mine_score, ids, scores in parts:
        late = np.setdiff1d(cand, ids)
        if len(late) and mine_score:
            more_ids, more = src.collect({}, depth, mine_score, scope, late)
            ids = np.concatenate([ids, more_ids])
            scores = {s: np.concatenate([scores[s], more[s]]) for s in mine_score}
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], cand)
        for s in mine_score:
            table[s] = scores[s][order][pos].astype(np.float32)
    return cand, table


def signal_query(signal: str, plan: Plan, enc: Encoded):
    return {"dense": enc.dense, "sparse": enc.sparse, "colbert": enc.colbert, "bm25": plan.query}[signal]


def execute(plan: Plan, snapshot, enc: Encoded) -> list[Hit]:
    first = {s: signal_query(s, plan, enc) for s in plan.first_stage}
    score = {s: signal_query(s, plan, enc) for s in plan.signals}
    cand, table = gather(snapshot.sources, first, plan.depth, score, snapshot.scope(plan.where))
    if cand.size == 0:
        return []
    if len(plan.signals) == 1:
        fused = table[plan.signals[0]].astype(np.float64)
    elif plan.fusion == "rrf":
        fused = rrf(table, plan.rrf_k, plan.weights)
    else:
        fused = weighted(table, plan.weights, plan.normalize)
    # MaxP: a document scores as its best chunk
    rows = snapshot.doc_rows(cand)
    order = np.lexsort((cand, -fused))
    best, seen = [], set()
    for i in order:
        if rows[i] not in seen:
            seen.add(rows[i])
            best.append(i)
            if len(best) == plan.k:
                break
    info = snapshot.docs.chunks(cand[best])
    hits = []
    for i in best:
        c = info[int(cand[i])]
        hits.append(Hit(id=c["doc_id"], score=float(fused[i]),
                        scores={s: float(table[s][i]) for s in plan.signals},
                        snippet=_snippet(c["text"]), path=c["path"], title=c["title"] or None,
                        chunk=c["chunk_no"], metadata=c["metadata"]))
    return hits


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
