"""Run a plan over a snapshot: first-stage retrieval, union, re-scoring, fusion, grouping by document."""
from __future__ import annotations

import numpy as np

from hsearch.types import Encoded, Hit

from .fusion import rrf, weighted
from .plan import Plan

SNIPPET_CHARS = 240


def retrieve(snapshot, signal: str, query, k: int, allow) -> tuple[np.ndarray, np.ndarray]:
    """Top-k chunk ids of one signal over every segment."""
    if signal == "bm25":
        return snapshot.bm25.search(query, k, allow)
    ids, scores = [], []
    for seg in snapshot.segments:
        i, s = seg.stores[signal].search(query, k, allow)
        ids.append(i)
        scores.append(s)
    ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    scores = np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32)
    top = np.lexsort((ids, -scores))[:k]
    return ids[top], scores[top]


def rescore(snapshot, signal: str, query, ids: np.ndarray) -> np.ndarray:
    if signal == "bm25":
        return snapshot.bm25.score(query, ids)
    out = np.zeros(len(ids), dtype=np.float32)
    for seg, pos in snapshot.by_segment(ids):
        if signal in seg.stores:
            out[pos] = seg.stores[signal].score(query, ids[pos])
    return out


def signal_query(signal: str, plan: Plan, enc: Encoded):
    return {"dense": enc.dense, "sparse": enc.sparse, "colbert": enc.colbert, "bm25": plan.query}[signal]


def execute(plan: Plan, snapshot, enc: Encoded, allowed: np.ndarray | None = None) -> list[Hit]:
    allow = snapshot.allow(allowed)
    pools = [retrieve(snapshot, s, signal_query(s, plan, enc), plan.depth, allow)[0] for s in plan.first_stage]
    cand = np.unique(np.concatenate(pools)) if pools else np.empty(0, np.int64)
    if cand.size == 0:
        return []
    table = {s: rescore(snapshot, s, signal_query(s, plan, enc), cand) for s in plan.signals}
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
