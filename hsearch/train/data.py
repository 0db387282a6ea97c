"""Training pairs for the heads: labelled (a BEIR qrels split) and unsupervised (title -> body).

Every pair points at a document of a *pool* (the documents of its source), from which hard
negatives are mined. Test splits are refused: the heads must never see what they are scored on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from hsearch.errors import InputError

MIN_BODY_CHARS = 40  # a body shorter than this teaches nothing about matching a title to it
# A labelled positive longer than this (a meeting transcript, a report) is cut into passages of about
# PASSAGE_CHARS and the query's positive becomes its passage that BM25 ranks first: the head sees the
# first max_length tokens of a text, and the first 512 tokens of a 13k-token transcript rarely hold
# what the query asks about (FirstP vs BestP, Dai & Callan 2019).
LONG_DOC_CHARS = 4000
PASSAGE_CHARS = 1600
HOLD_FROM = 200  # pairs a source needs before a tenth of its queries is held out (without --limit)
HOLD_AT_MOST = 2000  # held-out pairs a source gives at most (without --limit)


@dataclass(frozen=True)
class Pair:
    query: str
    doc: str  # key of the positive document in the pool
    source: str


@dataclass
class TrainingData:
    pairs: list[Pair]
    pool: dict[str, str]  # document key -> text; keys are "<source>/<id>", so sources never collide
    sources: dict[str, int]  # source -> pairs taken from it
    # pairs left out of training (their queries and documents never trained on) and their documents' texts:
    # what a trained model's fusion weights are chosen on (fusion_choice.py)
    held: list[Pair] = field(default_factory=list)
    held_pool: dict[str, str] = field(default_factory=dict)

    def positives(self) -> dict[tuple[str, str], set[str]]:
        """(source, query) -> keys of every document that is a positive of that query."""
        out: dict[tuple[str, str], set[str]] = {}
        for p in self.pairs:
            out.setdefault((p.source, p.query), set()).add(p.doc)
        return out

    def add(self, source: str, pairs: list[Pair], pool: dict[str, str]) -> None:
        if not pairs:
            raise InputError(f"{source} gave no training pairs")
        self.pairs += pairs
        self.pool.update(pool)
        self.sources[source] = len(pairs)


def beir_pairs(spec: str) -> tuple[str, list[Pair], dict[str, str]]:
    """'FOLDER[:SPLIT]' (split default train) -> (source, pairs, pool): one pair per relevant (query, doc)."""
    from hsearch.evaluate.beir import load_beir

    folder, _, split = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    split = split or "train"
    if split == "test":
        raise InputError(f"refusing to train on the test split of {folder}: the heads would be scored on what they "
                         "learned; use train (or dev)")
    data = load_beir(folder, split)
    source = f"{Path(folder).name}:{split}"
    docs = _corpus(data.corpus)
    pairs, pool = [], {}
    for qid, rels in data.qrels.items():
        for did, rel in rels.items():
            if rel > 0 and did in docs and qid in data.queries:
                key = f"{source}/{did}"
                pool[key] = docs[did]
                pairs.append(Pair(data.queries[qid], key, source))
    return source, *best_passages(pairs, pool)


def passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Consecutive runs of whole lines of about `size` characters (a line longer than that is one passage)."""
    out, cur = [], ""
    for line in text.splitlines(keepends=True):
        if cur and len(cur) + len(line) > size:
            out.append(cur)
            cur = ""
        cur += line
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def best_passages(pairs: list[Pair], pool: dict[str, str]) -> tuple[list[Pair], dict[str, str]]:
    """Each pair whose positive is longer than LONG_DOC_CHARS points instead at the passage of that document
    that BM25 (tantivy, over every passage of the long positives) ranks highest for its query; a query none
    of whose words occur in its document keeps the first passage."""
    long = sorted({p.doc for p in pairs if len(pool[p.doc]) > LONG_DOC_CHARS})
    if not long:
        return pairs, pool
    import tempfile

    import numpy as np

    from hsearch.index.bm25 import BM25Index

    keys, texts, rows = [], [], {}
    for doc in long:
        for j, text in enumerate(passages(pool[doc])):
            rows.setdefault(doc, []).append(len(texts))
            keys.append(f"{doc}#{j}")
            texts.append(text)
    out_pairs, out_pool = [], {k: v for k, v in pool.items() if k not in rows}
    with tempfile.TemporaryDirectory(prefix="hsearch-train-bestp-") as tmp:
        index = BM25Index(Path(tmp) / "passages", "default")
        index.add(np.arange(len(texts)), texts)
        index.commit()
        for p in pairs:
            if p.doc in rows:
                own = np.asarray(rows[p.doc], dtype=np.int64)
                row = int(own[int(np.argmax(index.score(p.query, own)))])  # argmax of all zeros: the first
                out_pool[keys[row]] = texts[row]
                p = Pair(p.query, keys[row], p.source)
            out_pairs.append(p)
    return out_pairs, out_pool


def title_pairs(path: str) -> tuple[str, list[Pair], dict[str, str]]:
    """Unsupervised pairs from any corpus (BGE-M3's first stage): a document's title -> its body; a
    document without a title gives its first line -> the rest when both are long enough."""
    from hsearch.ingest.loaders import load_path

    source = f"pairs:{Path(path).name}"
    pairs, pool = [], {}
    for doc in load_path(path):
        title, body = doc.title.strip(), doc.text.strip()
        if not title:
            first, _, rest = body.partition("\n")
            if not (8 <= len(first.strip()) <= 300):
                continue
            title, body = first.strip(), rest.strip()
        if len(body) < MIN_BODY_CHARS:
            continue
        key = f"{source}/{doc.id}"
        pool[key] = body
        pairs.append(Pair(title, key, source))
    return source, pairs, pool


def load_training_data(beir: list[str] = (), pairs_from: list[str] = (), limit: int | None = None,
                       seed: int = 0) -> TrainingData:
    """Pairs of every source; with `limit`, a seeded sample of at most that many pairs per source (the
    pool shrinks to their documents, so the cost of caching states stays bounded). Pairs left out of the
    sample are held out (`TrainingData.held`); without `limit`, a source of HOLD_FROM pairs or more gives a
    tenth of its queries (at most HOLD_AT_MOST pairs) to the held-out pairs instead of to training."""
    if not beir and not pairs_from:
        raise InputError("no training data: give --beir DATASET[:SPLIT] (labelled) and/or --pairs CORPUS "
                         "(unsupervised title -> body pairs)")
    data = TrainingData([], {}, {})
    for source, pairs, pool in [beir_pairs(s) for s in beir] + [title_pairs(p) for p in pairs_from]:
        if limit is not None and len(pairs) > limit:
            sample = random.Random(seed).sample(range(len(pairs)), limit)
            chosen = set(sample)
            held = [p for i, p in enumerate(pairs) if i not in chosen]
            pairs = sorted((pairs[i] for i in sample), key=lambda p: (p.doc, p.query))
        elif limit is None and len(pairs) >= HOLD_FROM:  # (with a --limit, a source under it trains whole, as before)
            queries = sorted({p.query for p in pairs})
            random.Random(seed).shuffle(queries)
            out = set(queries[:len(queries) // 10])
            held = [p for p in pairs if p.query in out][:HOLD_AT_MOST]
            pairs = [p for p in pairs if p.query not in out]
        else:
            data.add(source, pairs, pool)
            continue
        docs, queries = {p.doc for p in pairs}, {p.query for p in pairs}
        held = [p for p in held if p.doc not in docs and p.query not in queries]  # never seen in training
        data.held += held
        data.held_pool.update({p.doc: pool[p.doc] for p in held})
        data.add(source, pairs, {p.doc: pool[p.doc] for p in pairs})
    return data


def _corpus(path: Path) -> dict[str, str]:
    """id -> text of a corpus.jsonl, as `hsearch index` reads it (title, newline, text)."""
    from hsearch.ingest.loaders import load_path

    return {d.id: f"{d.title}\n{d.text}" if d.title else d.text for d in load_path(path)}
