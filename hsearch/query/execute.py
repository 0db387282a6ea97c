"""Run a plan over a snapshot: first-stage retrieval, union, re-scoring, fusion, grouping by document.

Retrieval and re-scoring go through the snapshot's sources (hsearch/backends/base.py), whatever holds
the vectors: hsearch's segment stores, BM25, or a Qdrant collection."""
from __future__ import annotations

from dataclasses import replace
from itertools import islice

import numpy as np

from hsearch.backends.base import owners
from hsearch.backends.local import EXACT_SEARCH_SCORES
from hsearch.errors import StaleSnapshot
from hsearch.types import PASSAGE, WHOLE, Encoded, Hit

from .fusion import normalize, rrf, weighted
from .plan import Plan


def retrieve(snapshot, signal: str, query, k: int, allow) -> tuple[np.ndarray, np.ndarray]:
    """Top-k chunk ids of one signal in the local stores (benchmarks time the stores alone with it)."""
    if signal == "bm25":
        return snapshot.bm25.search(query, k, allow)
    return snapshot.local.search(signal, query, k, allow)


def rescore(snapshot, signal: str, query, ids: np.ndarray) -> np.ndarray:
    if signal == "bm25":
        return snapshot.bm25.score(query, ids)
    return snapshot.local.score(signal, query, ids)


def gather(sources, first: dict, depth: int, score: dict, scope, extra=None,
           owner: dict | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The union of every first-stage signal's top-`depth` (and of `extra`, ids to score in any case)
    and every scoring signal's score on it.

    Each signal goes to the first source that holds it. Sources are asked in order, each with the
    candidates found so far; one that saw a smaller union then scores the newcomers, so the last source
    (a remote one) is asked once and the result equals retrieving everything, then scoring everything.
    `owner`: `owners(sources)`, where the caller keeps it.
    """
    owner = owners(sources) if owner is None else owner
    for s in [*first, *score]:
        if s not in owner:  # an empty collection, or a signal no store holds
            return np.empty(0, np.int64), {}
    if extra is None and len(first) == 1 and first.keys() == score.keys():  # one signal retrieves and ranks: its
        # source alone answers, without the bookkeeping of a union
        ids, scores = owner[next(iter(first))].collect(first, depth, score, scope, np.empty(0, np.int64))
        return ids, {s: x.astype(np.float32, copy=False) for s, x in scores.items()}
    cand = np.unique(np.asarray(extra, np.int64)) if extra is not None else np.empty(0, np.int64)
    parts = []
    for src in sources:
        mine_first = {s: q for s, q in first.items() if owner[s] is src}
        mine_score = {s: q for s, q in score.items() if owner[s] is src}
        if mine_first or mine_score:
            ids, scores = src.collect(mine_first, depth, mine_score, scope, cand)
            cand = np.union1d(cand, ids) if len(cand) else ids  # a source's ids come sorted and distinct
            parts.append((src, mine_score, ids, scores))
    table = {}
    for src, mine_score, ids, scores in parts:
        if np.array_equal(ids, cand):  # this source saw every candidate, in their order (one source, no extra)
            table.update({s: scores[s].astype(np.float32, copy=False) for s in mine_score})
            continue
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


def signal_query(signal: str, plan: Plan, enc: Encoded | None):
    """What `signal` is asked with: the query's text for BM25 (which needs no encoding), else its encoding."""
    return plan.query if signal == "bm25" else getattr(enc, signal)


def _fuse(plan: Plan, table: dict[str, np.ndarray]) -> np.ndarray:
    if len(plan.signals) == 1:
        return table[plan.signals[0]].astype(np.float64)
    if plan.fusion == "rrf":
        return rrf(table, plan.rrf_k, plan.weights)
    return weighted(table, plan.weights, plan.normalize)


def candidates(plan: Plan, snapshot, enc: Encoded, view: int | None, extra=None,
               depth: int | None = None) -> tuple[np.ndarray, dict]:
    """One view's candidate chunks (the first stage's union of each signal's top-`depth`, plan.depth unless
    given, or only `extra`) and every signal's score on them: what fusion adds up. Neither depends on the
    fusion's weights (weight sweeps re-fuse them)."""
    first = {s: signal_query(s, plan, enc) for s in plan.first_stage} if extra is None else {}
    score = {s: signal_query(s, plan, enc) for s in plan.signals}
    return gather(snapshot.sources, first, depth or plan.depth, score, snapshot.scope(plan.where, view, plan.ef_search),
                  extra, snapshot.owners)


class _Ranked:
    """One view's candidates, their signal scores and fused score, and each document's best chunk."""

    def __init__(self, plan: Plan, snapshot, enc: Encoded, view: int | None, extra=None):
        if extra is None and plan.cuts_at_k:
            self._rank(plan, snapshot, enc, view, None, plan.cut_depth)
            if self._cut_holds(plan, snapshot):
                return
        self._rank(plan, snapshot, enc, view, extra)

    def _cut_holds(self, plan: Plan, snapshot) -> bool:
        """Whether this short list's top-k documents are the full depth's (a one-signal plan, `Plan.cuts_at_k`):
        every chunk it left out scores below its k-th document. Such a chunk scores at most the list's last one
        in the store's search; a re-scored signal (dense) may differ from that by rounding, hence its margin.
        A document's score is its best chunk's, so then no document left out could rank in the top-k.
        Where the store orders ties by chunk id, as the ranking here does, a tie with the last one is enough:
        a chunk left out then has a larger id than every kept chunk of that score, the k-th document's too."""
        signal = plan.signals[0]
        exact = signal in EXACT_SEARCH_SCORES
        if len(self.cand) < plan.cut_depth:
            return exact  # every hit was retrieved (an approximate or filtered search may have missed some)
        if len(self.best) < plan.k:
            return False
        kth = float(self.fused[list(self.best.values())[plan.k - 1]])
        last = float(self.table[signal].min())
        if exact and signal in getattr(snapshot.owners[signal], "ties_by_id", ()):
            return kth >= last
        return kth > last + (0.0 if exact else max(1e-4 * max(abs(kth), abs(last)), 1e-5))

    def _rank(self, plan: Plan, snapshot, enc: Encoded, view: int | None, extra, depth: int | None = None):
        self.cand, self.table = candidates(plan, snapshot, enc, view, extra, depth)
        self.fused = _fuse(plan, self.table) if self.cand.size else np.empty(0)
        order = np.lexsort((self.cand, -self.fused))  # best first; ties: the smaller chunk id
        # document row -> index of its best chunk (its first in rank order), best documents first (a loop over
        # Python ints: faster than np.unique's sort at these sizes)
        self.best: dict[int, int] = {}
        for row, i in zip(snapshot.doc_rows(self.cand[order]).tolist(), order.tolist()):
            if row not in self.best:
                self.best[row] = i

    def doc_scores(self, limit: int | None = None) -> dict[int, float]:
        """Document row -> its best chunk's fused score, best first (the first `limit` documents when given)."""
        best = self.best.items() if limit is None else islice(self.best.items(), limit)
        return {row: float(self.fused[i]) for row, i in best}


def execute(plan: Plan, snapshot, enc: Encoded, enc_whole: Encoded | None = None) -> list[Hit]:
    """Run `plan`. `enc`: the query encoded by the collection's plain model; `enc_whole`: by its
    long-context model, needed when the plan scores whole documents (doc_score whole or both)."""
    plan = for_coverage(plan, snapshot)
    views = snapshot.has_views
    passages = _Ranked(plan, snapshot, enc, PASSAGE if views else None) if plan.doc_score != "whole" else None
    whole = _Ranked(plan, snapshot, enc_whole, WHOLE) if views and plan.doc_score != "maxp" else None
    if whole is None:
        return _one_view_hits(plan, snapshot, passages)
    if passages is None:
        scores = whole.doc_scores(plan.k)
    else:  # both: min-max each view's document scores; a document one view did not retrieve gets its 0
        p, w = (_minmax(r.doc_scores()) for r in (passages, whole))
        scores = {row: (1 - plan.whole_weight) * p.get(row, 0.0) + plan.whole_weight * w.get(row, 0.0)
                  for row in p.keys() | w.keys()}
        scores = dict(sorted(scores.items(), key=lambda x: (-x[1], x[0])))  # ties: the older document
    top = list(scores)[:plan.k]
    if not top:
        return []
    shown = {row: (passages, passages.best[row]) for row in top if passages is not None and row in passages.best}
    missing = [row for row in top if row not in shown]
    if missing:  # documents found through their whole view: score their passages to show the best one
        ids = np.asarray(snapshot.docs.chunk_ids_of_rows(missing), np.int64)
        found = _Ranked(plan, snapshot, enc, PASSAGE, extra=ids[snapshot.in_view(ids, PASSAGE) & snapshot.live(ids)])
        shown.update({row: (found, found.best[row]) if row in found.best else (whole, whole.best[row])
                      for row in missing})
    info = dict(zip(top, _fields(snapshot, [int(shown[row][0].cand[shown[row][1]]) for row in top])))
    hits = []
    for row in top:
        ranked, i = shown[row]
        detail = {s: float(ranked.table[s][i]) for s in plan.signals}
        if whole is not None and row in whole.best:
            detail.update({f"whole:{s}": float(whole.table[s][whole.best[row]]) for s in plan.signals})
        doc_id, snippet, path, title, chunk, metadata = info[row]
        hits.append(Hit(doc_id, float(scores[row]), detail, snippet, path, title, chunk, metadata))
    return hits


def _one_view_hits(plan: Plan, snapshot, ranked: _Ranked) -> list[Hit]:
    """The hits of a plan that ranks one view: its top-k documents, best first already (ties: the smaller
    chunk id), each shown by its best chunk; their scores read in one gather per signal."""
    at = np.fromiter(islice(ranked.best.values(), plan.k), np.intp)
    if not len(at):
        return []
    fields = _fields(snapshot, ranked.cand[at].tolist())
    scores = zip(*(ranked.table[s][at].tolist() for s in plan.signals))
    return [Hit(doc_id, score, dict(zip(plan.signals, signal)), snippet, path, title, chunk, metadata)
            for score, signal, (doc_id, snippet, path, title, chunk, metadata)
            in zip(ranked.fused[at].tolist(), scores, fields)]


def _fields(snapshot, ids) -> list[tuple]:
    """`Snapshot.hit_fields` of `ids`: (doc_id, snippet, path, title, chunk_no, metadata) of each."""
    fields = snapshot.hit_fields(ids)
    if None in fields:  # purged by `optimize` after this (older) snapshot was opened (segments written before hit
        # columns: their fields come from docs.sqlite)
        raise StaleSnapshot("a document of this snapshot was purged meanwhile; run the query again")
    return fields


def for_coverage(plan: Plan, snapshot) -> Plan:
    """`plan` with its low-coverage weights when the collection holds under its threshold of the query's BM25
    terms (a query in another language than the documents, whose lexical matches are only names and numbers,
    which min-max would still spread over [0, 1]); else `plan`."""
    if not plan.low_coverage or snapshot.bm25 is None:
        return plan
    threshold, weights = plan.low_coverage
    c = snapshot.bm25.coverage(plan.query)
    return replace(plan, weights=weights, low_coverage=()) if c is not None and c < threshold else plan


def _minmax(scores: dict[int, float]) -> dict[int, float]:
    """Min-max over one view's documents; a view that retrieved equal scores (or one document) gives 1."""
    x = np.fromiter(scores.values(), np.float64, len(scores))
    y = normalize(x, "minmax") if x.size and x.max() > x.min() else np.ones_like(x)
    return dict(zip(scores, y.tolist()))
