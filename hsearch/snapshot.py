"""A reader's consistent view of a collection: the manifest it loaded, its segments' readers,
the tombstones, and the shared BM25 and document stores filtered through them.

`sources` are what the planner queries (hsearch/backends/base.py): BM25, the segments' own stores, and
for a Qdrant collection the Qdrant source last (it then answers each query in one call)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsearch.backends import open_remote
from hsearch.backends.base import Scope, owners
from hsearch.backends.local import ReaderSource, SegmentSource
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError
from hsearch.index.bm25 import BM25Index
from hsearch.index.dense import DenseReader
from hsearch.index.multivector import open_multivector
from hsearch.index.sparse import open_sparse
from hsearch.storage import arrays, hitcols
from hsearch.storage.docstore import DocStore
from hsearch.storage.hitcols import HitColumns
from hsearch.storage.manifest import Manifest
from hsearch.types import PASSAGE

SEGMENTS = "segments"


class SegmentReaders:
    def __init__(self, folder: Path, name: str, start: int, end: int):
        self.name, self.start, self.end = name, start, end
        try:
            # a plain ndarray view of the map: indexing an np.memmap pays for the subclass on every call
            self.doc_rows = np.asarray(arrays.load(folder / "doc_rows.npy", mmap_mode="r"))
            # which view each chunk belongs to; absent: one view, every chunk in both (types.py)
            self.views = arrays.load(folder / "views.npy") if (folder / "views.npy").exists() else None
            # what hits show of their chunks (absent in a segment written before them: docs.sqlite has it)
            self.hits = HitColumns(folder) if (folder / hitcols.FOLDER).exists() else None
            self.stores = {}  # a Qdrant collection keeps dense and sparse (and maybe colbert) in Qdrant
            if (folder / "dense").exists():
                self.stores["dense"] = DenseReader(folder / "dense")
            if (folder / "sparse").exists():
                self.stores["sparse"] = open_sparse(folder / "sparse")
            if (folder / "colbert").exists():
                self.stores["colbert"] = open_multivector(folder / "colbert")
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise CollectionError(f"segment {name} is damaged ({type(e).__name__}: {e}); rebuild the collection "
                                  "with `hsearch index`") from None


class Snapshot:
    def __init__(self, folder: Path, manifest: Manifest | None = None):
        self.folder = folder
        self.manifest = manifest or Manifest.load(folder)
        self.dead_chunks, self.dead_docs = self.manifest.load_tombstones(folder)
        self.segments = [SegmentReaders(folder / SEGMENTS / s.name, s.name, s.start, s.end)
                         for s in self.manifest.segments]
        self._starts = np.array([s.start for s in self.segments], dtype=np.int64)
        self._ends = np.array([s.end for s in self.segments], dtype=np.int64)
        # segments whose ids follow each other without a gap (one, or as written and merged in order): then
        # `live` is one range check where nothing is deleted
        self._span = ((int(self._starts[0]), int(self._ends[-1])) if len(self.segments)
                      and (self._starts[1:] == self._ends[:-1]).all() else None)
        self.has_views = any(s.views is not None for s in self.segments)  # whole documents beside passages
        self.docs = DocStore(folder / "docs.sqlite")
        config = CollectionConfig.from_dict(self.manifest.config)
        analyzer = config.bm25_analyzer or "auto"
        self.bm25 = BM25Index(folder / "bm25", analyzer) if config.bm25 else None
        whole = folder / "bm25-whole"  # the whole-document view's own BM25 (a long-context collection)
        self.bm25_whole = BM25Index(whole, analyzer) if self.bm25 is not None and whole.exists() else None
        self.local = SegmentSource(self.segments)
        remote = open_remote(config, folder, self.manifest, self.dead_chunks)
        bm25 = None
        if self.bm25 is not None:  # deletions a killed run left in BM25 are checked against the tombstones
            unpurged = self.manifest.tombstones and any(b.purged() != self.manifest.tombstones
                                                        for b in (self.bm25, self.bm25_whole) if b is not None)
            bm25 = ReaderSource("bm25", self.bm25, self.bm25_whole, check=self.live if unpurged else None)
        self.sources = [s for s in (bm25, self.local, remote) if s]
        self.owners = owners(self.sources)  # signal -> its source, for every query of this snapshot
        self._scopes: dict[tuple, Scope] = {}  # see scope()
        self._passages_per_document: float | None = None
        # the deleted chunks a store can still return: a segment whose deleted chunks a merge dropped has
        # none (hsearch/merge.py), so the masks of its stores' ids need not look them up
        self._stored_dead = self.dead_chunks
        if len(self.dead_chunks) and any(s.dropped for s in self.manifest.segments):
            spans = [np.searchsorted(self.dead_chunks, [s.start, s.end]) for s in self.manifest.segments]
            keep = [self.dead_chunks[lo:hi] for (lo, hi), s in zip(spans, self.manifest.segments)
                    if hi - lo > s.dropped]
            self._stored_dead = np.concatenate(keep) if keep else np.empty(0, np.int64)

    @property
    def n_chunks(self) -> int:
        return int((self._ends - self._starts).sum()) - len(self.dead_chunks)

    def live(self, ids: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
        """Mask of chunk ids that belong to this snapshot and are not deleted."""
        ids = np.asarray(ids, dtype=np.int64)
        dead = self.dead_chunks if dead is None else dead
        if self._span is not None and not len(dead):
            return (ids >= self._span[0]) & (ids < self._span[1])
        return live_mask(ids, self._starts, self._ends, dead)

    def live_stored(self, ids: np.ndarray) -> np.ndarray:
        """`live` for ids that a store returned (what a query's scope sees): the same mask, with fewer
        deleted ids to look up once merges have dropped them from the stores."""
        return self.live(ids, self._stored_dead)

    @property
    def passages_per_document(self) -> float:
        """Mean passages per live document (whole-document views left out), counted once per snapshot."""
        if self._passages_per_document is None:
            ids = np.concatenate([np.arange(s.start, s.end, dtype=np.int64) for s in self.segments] or [np.empty(0, np.int64)])
            rows = self.doc_rows(ids[self.live(ids) & self.in_view(ids, PASSAGE)])
            self._passages_per_document = len(rows) / max(len(np.unique(rows)), 1)
        return self._passages_per_document

    def in_view(self, ids: np.ndarray, view: int) -> np.ndarray:
        """Mask of chunk ids that belong to `view` (PASSAGE or WHOLE); chunks of single-view segments
        belong to both."""
        ids = np.asarray(ids, dtype=np.int64)
        ok = np.ones(len(ids), dtype=bool)
        for s, pos in self.by_segment(ids):
            if s.views is not None:
                ok[pos] = (s.views[ids[pos] - s.start] & view) != 0
        return ok

    def scope(self, where=(), view: int | None = None, ef_search: int | None = None) -> Scope:
        """What a query with metadata filter `where` may see in this snapshot, in one view of the documents.
        One Scope per (where, view) is kept for the snapshot's life, with the masks it computed."""
        view = view if self.has_views else None
        key = (tuple(tuple(w) for w in where), view)
        scope = self._scopes.get(key)
        if scope is None:
            live = self.live_stored if view is None else (lambda ids: self.live_stored(ids) & self.in_view(ids, view))
            scope = Scope(where, live, self.docs.filtered_chunk_ids, view)
            if len(self._scopes) >= 64:  # filters no longer asked for
                self._scopes.clear()
            self._scopes[key] = scope
        return scope.with_ef_search(ef_search)

    def by_segment(self, ids: np.ndarray):
        """Yield (segment readers, positions into ids) for the ids each segment holds."""
        return self.local.by_segment(ids)

    def hit_fields(self, ids) -> list[tuple | None]:
        """For each chunk id, what a hit shows of it: (doc_id, snippet, path, title, chunk_no, metadata), path and
        title None when empty; from the segments' hit columns, or from docs.sqlite for a segment written before
        them. None for a chunk whose text `optimize` purged after this (older) snapshot was opened."""
        listed = [int(i) for i in ids]  # a few ids: Python ints, no NumPy step per hit
        if listed and (s := self.local.holding(min(listed), max(listed))) is not None and s.hits is not None:
            return s.hits.fields([i - s.start for i in listed])
        ids = np.asarray(ids, np.int64)
        out = [None] * len(ids)
        for s, pos in self.by_segment(ids):
            got = s.hits.fields((ids[pos] - s.start).tolist()) if s.hits is not None else self._docs_fields(ids[pos])
            for i, f in zip(np.arange(len(ids))[pos].tolist(), got):
                out[i] = f
        return out

    def _docs_fields(self, ids: np.ndarray) -> list[tuple | None]:
        """`hit_fields` from docs.sqlite (a segment written before hit columns)."""
        rows = self.docs.chunks(ids.tolist())
        return [(c["doc_id"], hitcols.snippet(c["text"]), c["path"] or None, c["title"] or None, c["chunk_no"],
                 c["metadata"]) if (c := rows.get(cid)) else None for cid in ids.tolist()]

    def doc_rows(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) and (s := self.local.holding(ids.min(), ids.max())) is not None:  # one gather
            return s.doc_rows[ids - s.start].astype(np.int64, copy=False)
        out = np.zeros(len(ids), dtype=np.int64)
        for s, pos in self.by_segment(ids):
            out[pos] = s.doc_rows[ids[pos] - s.start]
        return out


def live_mask(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Mask of chunk ids inside one of the segments [starts[i], ends[i]) (sorted) and not in `dead` (sorted, unique:
    the tombstones file's, or slices of it)."""
    seg = np.searchsorted(starts, ids, side="right") - 1
    ok = seg >= 0
    ok[ok] &= ids[ok] < ends[seg[ok]]
    if len(dead):  # a binary search per id
        at = np.minimum(np.searchsorted(dead, ids), len(dead) - 1)
        ok &= dead[at] != ids
    return ok
