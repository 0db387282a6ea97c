"""Classic full-text BM25 through tantivy: one index per collection, keyed by chunk id.

Unlike the segment stores it is mutable (tantivy has its own segments and commits), so readers
filter its hits through the manifest's snapshot: chunks of uncommitted or deleted segments are
never returned, and BM25's corpus statistics span the whole collection.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import Allow

TOKENIZERS = ("en_stem", "default", "raw", "whitespace")


def _schema(tokenizer: str):
    import tantivy

    b = tantivy.SchemaBuilder()
    b.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
    b.add_text_field("text", stored=False, tokenizer_name=tokenizer)
    return b.build()


class BM25Index:
    def __init__(self, folder: Path, tokenizer: str = "en_stem"):
        import tantivy

        folder.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(_schema(tokenizer), path=str(folder), reuse=True)
        self._writer = None
        self._searcher = None  # a reader's: one per snapshot (engine.Collection makes a new one per commit)

    # ---- writing ----------------------------------------------------------------------------
    def add(self, ids: np.ndarray, texts: list[str]) -> None:
        import tantivy

        w = self._writer_()
        for cid, text in zip(ids.tolist(), texts):
            w.add_document(tantivy.Document(chunk_id=int(cid), text=text))

    def delete(self, ids) -> None:
        w = self._writer_()
        for cid in np.asarray(ids).tolist():
            w.delete_documents("chunk_id", int(cid))

    def delete_from(self, first_id: int) -> None:
        """Drop chunks of interrupted runs (ids at or beyond the manifest's next id)."""
        import tantivy

        q = tantivy.Query.range_query(self.index.schema, "chunk_id", tantivy.FieldType.Integer, first_id, 2**62)
        self._writer_().delete_documents_by_query(q)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None
            self._searcher = None

    def _writer_(self):
        if self._writer is None:
            self._writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        return self._writer

    # ---- reading ----------------------------------------------------------------------------
    def searcher(self):
        """The index as of the first search through this object (reloading it per query cost more than
        the search; newer commits belong to newer snapshots, which open their own BM25Index)."""
        if self._searcher is None:
            self.index.reload()
            self._searcher = self.index.searcher()
        return self._searcher

    def _query(self, text: str):
        # A query is plain words, never tantivy syntax: "what: (x" must not become a field lookup.
        words = re.sub(r"[^\w\s]", " ", text)
        words = re.sub(r"\b(AND|OR|NOT|IN)\b", lambda m: m.group(0).lower(), words)
        query, _errors = self.index.parse_query_lenient(words, ["text"])
        return query

    def search(self, text: str, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        searcher = self.searcher()
        query, limit = self._query(text), k
        while True:  # over-fetch until k allowed hits survive the snapshot/filter, or hits run out
            hits = searcher.search(query, limit).hits
            ids = np.array([searcher.doc(a)["chunk_id"][0] for _s, a in hits], dtype=np.int64)
            scores = np.array([s for s, _a in hits], dtype=np.float32)
            if allow is not None and len(ids):
                keep = allow(ids)
                ids, scores = ids[keep], scores[keep]
            if len(ids) >= k or len(hits) < limit:
                return ids[:k], scores[:k]
            limit *= 4

    def score(self, text: str, ids: np.ndarray) -> np.ndarray:
        """Exact BM25 of the given chunks (0 where no query term matches)."""
        import tantivy

        out = np.zeros(len(ids), dtype=np.float32)
        if len(ids) == 0:
            return out
        searcher = self.searcher()
        only = tantivy.Query.const_score_query(
            tantivy.Query.term_set_query(self.index.schema, "chunk_id", [int(i) for i in ids]), 0.0)
        q = tantivy.Query.boolean_query([(tantivy.Occur.Must, self._query(text)), (tantivy.Occur.Must, only)])
        where = {int(c): i for i, c in enumerate(ids)}
        for s, a in searcher.search(q, len(ids)).hits:
            out[where[searcher.doc(a)["chunk_id"][0]]] = s
        return out
