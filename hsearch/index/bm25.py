"""Classic full-text BM25 through tantivy: one index per collection, keyed by chunk id.

Unlike the segment stores it is mutable (tantivy has its own segments and commits), so readers
filter its hits through the manifest's snapshot: chunks of uncommitted or deleted segments are
never returned, and BM25's corpus statistics span the whole collection.

Deleted chunks leave it after the manifest that deletes them is saved (before, they are still live), so a
run killed in between leaves them here. `PURGED_FILE` names the manifest's tombstones file once all of its
chunks are gone from tantivy; while it names another one, readers check every hit against the
tombstones (a merge may have dropped those chunks from the segment stores, and with them the check), and
the next writer deletes them again (hsearch/writer.py).

The text is analysed here, in Python, by the collection's analyzer (hsearch/index/analyzers.py): the
terms go to tantivy whitespace-joined, into one field that tantivy only splits at spaces, and queries
are built term by term from the same analysis. A collection built before analyzers (`en_stem`, or
another tantivy tokenizer name) keeps tantivy's own analysis of one `text` field, exactly as then.
"""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError
from hsearch.storage.atomic import fsync_dir, write_json_atomic

from .analyzers import LEGACY, PIECES, VERSION, WORD_ANALYZERS, Analyzer
from .base import Allow

ANALYZER_FILE = "analyzer.json"  # beside tantivy's files: the analysis its terms were made with
PURGED_FILE = "purged.json"  # {"tombstones": the manifest's tombstones file whose chunks are all deleted here}
# `score` names its chunks by one term query each up to this many, else by a term set. Searching tantivy's term
# set was most of a fused plan's BM25 time at 100k chunks (benchmarks/RESULTS.md, "Query path, session 12":
# dense+bm25 4.57 -> 3.41 ms); the term queries' cost grows with the ids (each is built in Python), the set's hardly.
_TERM_QUERIES_UP_TO = 1000
# The writer's memory budget when `compact` rewrites the index: tantivy starts a new segment when it runs out (the
# writes use 64 MB). tantivy takes memory as it needs it, not the whole budget at once.
_COMPACT_HEAP = 1_000_000_000


def _schema(analyzer: str):
    import tantivy

    b = tantivy.SchemaBuilder()
    b.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
    if analyzer in LEGACY:
        b.add_text_field("text", stored=False, tokenizer_name=analyzer)
    else:
        b.add_text_field("terms", stored=False, tokenizer_name="whitespace")
        b.add_text_field("analyzer", stored=False, tokenizer_name="raw")  # the word analyzer a chunk got
    return b.build()


class BM25Index:
    def __init__(self, folder: Path, analyzer: str = "en_stem"):
        import tantivy

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.analyzer = None if analyzer in LEGACY else Analyzer(analyzer, self._record(folder, analyzer))
        self.index = tantivy.Index(_schema(analyzer), path=str(folder), reuse=True)
        self._writer = None
        self._searcher = None  # a reader's: one per snapshot (engine.Collection makes a new one per commit)
        self._present = None  # (searcher, the word analyzers its chunks got)
        # (query text, analyzers, its terms per analyzer): one query analysed once for its search, the scores of
        # the other signals' candidates and its coverage (a tuple replaced whole, so threads share it safely)
        self._analysed = None

    @staticmethod
    def _record(folder: Path, name: str) -> str:
        """Check (or, in a new index, write) what this index's terms were made with; the pieces
        tokenizer's digest, which `Analyzer` checks when it first loads the tokenizer."""
        path = folder / ANALYZER_FILE
        if path.exists():
            built = json.loads(path.read_text())
            if built.get("analyzer") != name or built.get("version") != VERSION:
                raise CollectionError(
                    f"{folder} was built with BM25 analyzer {built.get('analyzer')!r} (version {built.get('version')}), "
                    f"not {name!r} (version {VERSION}); index into a new --collection, or rebuild this one")
            return built["pieces"]
        if (folder / "meta.json").exists():  # terms made by tantivy itself: a collection from before analyzers
            raise CollectionError(f"{folder} holds a BM25 index without a recorded analyzer (built with en_stem); "
                                  f"it cannot be read as {name!r}: index into a new --collection")
        record = {"analyzer": name, "version": VERSION, "pieces": PIECES.digest()}
        # a reader and the writer (two threads of `hsearch serve`) may both create it: same content, own temp names
        tmp = path.with_name(f".{ANALYZER_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
        return record["pieces"]

    # ---- writing ----------------------------------------------------------------------------
    def choose(self, text: str, lang=None) -> str | None:
        """The word analyzer a document gets (None in a collection from before analyzers)."""
        return None if self.analyzer is None else self.analyzer.choose(text, lang)

    def add(self, ids: np.ndarray, texts: list[str], analyzers: list[str | None] | None = None) -> None:
        """Index chunks; `analyzers`: each chunk's word analyzer (its document's `choose`), else
        chosen from the chunk itself."""
        import tantivy

        w = self._writer_()
        for n, (cid, text) in enumerate(zip(ids.tolist(), texts)):
            if self.analyzer is None:
                w.add_document(tantivy.Document(chunk_id=int(cid), text=text))
                continue
            name = (analyzers[n] if analyzers is not None else None) or self.choose(text)
            terms = " ".join(self.analyzer.document(text, name))
            w.add_document(tantivy.Document(chunk_id=int(cid), terms=terms, analyzer=name))

    def delete(self, ids) -> None:
        w = self._writer_()
        for cid in np.asarray(ids).tolist():
            w.delete_documents("chunk_id", int(cid))

    def delete_from(self, first_id: int) -> None:
        """Drop chunks of interrupted runs (ids at or beyond the manifest's next id)."""
        import tantivy

        q = tantivy.Query.range_query(self.index.schema, "chunk_id", tantivy.FieldType.Integer, first_id, 2**62)
        self._writer_().delete_documents_by_query(q)

    def purged(self) -> str | None:
        """The tombstones file (storage/manifest.py) whose chunks are all deleted from this index; "" for
        none recorded (a new index, or one from before the record)."""
        path = self.folder / PURGED_FILE
        return json.loads(path.read_text())["tombstones"] if path.exists() else ""

    def mark_purged(self, tombstones: str | None) -> None:
        """Record that `tombstones`' chunks are deleted here (after the commit that deleted them)."""
        write_json_atomic(self.folder / PURGED_FILE, {"tombstones": tombstones})

    def compacted(self) -> bool:
        """Whether the index is one tantivy segment without deleted chunks, as `compact` leaves it."""
        path = self.folder / PURGED_FILE
        if not path.exists() or not json.loads(path.read_text()).get("compacted"):
            return False
        self.index.reload()
        return self.index.searcher().num_segments <= 1

    def compact(self, texts, live) -> bool:
        """Rewrite the index as one tantivy segment of its live chunks, as Lucene's forceMerge(1) does (`hsearch
        optimize`): every segment is one more search per query, and deleted chunks count in BM25's statistics until
        tantivy merges them away, which it may never do for a few large segments. `texts(ids)`: chunk id -> text;
        `live(ids)`: mask of the chunks the collection still holds. Each chunk keeps the word analyzer it got
        (read back from the index), so its terms are the same. One tantivy commit: a run killed before it leaves the
        index as it was. Returns whether it rewrote anything."""
        import tantivy

        if self.compacted():
            return False
        self.index.reload()  # every commit so far (a searcher may lag behind the writer's last one)
        searcher = self.index.searcher()
        n = searcher.num_docs
        groups = [(None, tantivy.Query.all_query())] if self.analyzer is None else [
            (name, tantivy.Query.term_query(self.index.schema, "analyzer", name)) for name in self.present(searcher)]
        ids, names = np.empty(0, np.int64), []
        for name, query in groups if n else ():
            got = _chunk_ids(searcher, searcher.search(query, n, count=False).hits)
            ids = np.concatenate([ids, got])
            names += [name] * len(got)
        keep = np.flatnonzero(live(ids))
        keep = keep[np.argsort(ids[keep], kind="stable")]  # in chunk-id order
        self._writer = self.index.writer(heap_size=_COMPACT_HEAP, num_threads=1)  # heap: room for one segment
        self._writer.delete_all_documents()
        for at in range(0, len(keep), 10_000):
            part = keep[at:at + 10_000]
            text = texts(ids[part])
            missing = [int(ids[i]) for i in part if int(ids[i]) not in text]
            if missing:
                self._writer.rollback()
                self._writer = None
                raise CollectionError(f"chunks {missing[:5]} are in BM25 but have no text in docs.sqlite; rebuild "
                                      "the collection with `hsearch index`")
            self.add(ids[part], [text[int(ids[i])] for i in part], [names[i] for i in part])
        self.commit()
        self.index.reload()
        path = self.folder / PURGED_FILE
        write_json_atomic(path, {"tombstones": self.purged(), "compacted": True})
        return True

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

    def present(self, searcher) -> list[str]:
        """The word analyzers the indexed chunks got (deleted chunks count until tantivy merges them away);
        worked out once per searcher."""
        if self._present is None or self._present[0] is not searcher:
            self._present = (searcher, [name for name in WORD_ANALYZERS if searcher.doc_freq("analyzer", name) > 0])
        return self._present[1]

    def counts(self) -> dict[str, int]:
        """Chunks per word analyzer ({} in a collection from before analyzers), deleted ones included
        until tantivy merges them away."""
        if self.analyzer is None:
            return {}
        self.index.reload()
        searcher = self.index.searcher()
        return {name: n for name in WORD_ANALYZERS if (n := searcher.doc_freq("analyzer", name))}

    def coverage(self, text: str) -> float | None:
        """The share of the query's terms that occur in the collection, under the word analyzer that finds the
        most of them: near 1 for a query in the documents' language, low for one in another language (its
        words are not there, only names and numbers). None in a collection from before analyzers, or for a
        query with no term. Deleted chunks count until tantivy merges them away."""
        if self.analyzer is None:
            return None
        searcher = self.searcher()
        shares = [sum(searcher.doc_freq("terms", t) > 0 for t in terms) / len(terms)
                  for terms in self._terms(text, searcher) if terms]
        return max(shares) if shares else None

    def _terms(self, text: str, searcher) -> list[set[str]]:
        """The query's terms per word analyzer the collection holds (`Analyzer.query_by_analyzer`), kept for
        the last query."""
        present = self.present(searcher)
        last = self._analysed
        if last is None or last[0] != text or last[1] is not present:
            last = self._analysed = (text, present, self.analyzer.query_by_analyzer(text, present))
        return last[2]

    def _query(self, text: str, searcher):
        """The query, or None when it has no term this index could hold."""
        import tantivy

        if self.analyzer is None:
            # A query is plain words, never tantivy syntax: "what: (x" must not become a field lookup.
            words = re.sub(r"[^\w\s]", " ", text)
            words = re.sub(r"\b(AND|OR|NOT|IN)\b", lambda m: m.group(0).lower(), words)
            query, _errors = self.index.parse_query_lenient(words, ["text"])
            return query
        terms = set().union(*self._terms(text, searcher))
        if not terms:
            return None
        schema = self.index.schema
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(schema, "terms", term))
                                            for term in sorted(terms)])

    def search(self, text: str, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        searcher = self.searcher()
        query, limit = self._query(text, searcher), k
        if query is None:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        while True:  # over-fetch until k allowed hits survive the snapshot/filter, or hits run out
            hits = searcher.search(query, limit, count=False).hits  # count: every match visited, unused here
            ids = _chunk_ids(searcher, hits)
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
        query = self._query(text, searcher)
        if query is None:
            return out
        schema = self.index.schema
        if len(ids) <= _TERM_QUERIES_UP_TO:  # one term query per id (see _TERM_QUERIES_UP_TO)
            ids_query = tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(schema, "chunk_id", int(i)))
                                                     for i in ids])
        else:
            ids_query = tantivy.Query.term_set_query(schema, "chunk_id", [int(i) for i in ids])
        only = tantivy.Query.const_score_query(ids_query, 0.0)
        q = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, only)])
        hits = searcher.search(q, len(ids), count=False).hits
        if hits:
            order = np.argsort(ids, kind="stable")
            out[order[np.searchsorted(ids[order], _chunk_ids(searcher, hits))]] = [s for s, _a in hits]
        return out


def _chunk_ids(searcher, hits) -> np.ndarray:
    """The chunk ids of tantivy hits, read from the chunk_id fast field (a column) in one call, not from each
    hit's stored document."""
    return np.array(searcher.fast_field_values("chunk_id", [a for _s, a in hits]), dtype=np.int64)
