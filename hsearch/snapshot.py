"""A reader's consistent view of a collection: the manifest it loaded, its segments' readers,
the tombstones, and the shared BM25 and document stores filtered through them.

`sources` are what the planner queries (hsearch/backends/base.py): BM25, the segments' own stores, and
for a Qdrant collection the Qdrant source last (it then answers each query in one call)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsearch.backends import open_remote
from hsearch.backends.base import Scope
from hsearch.backends.local import ReaderSource, SegmentSource
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError
from hsearch.index.bm25 import BM25Index
from hsearch.index.dense import DenseReader
from hsearch.index.multivector import open_multivector
from hsearch.index.sparse import open_sparse
from hsearch.storage.docstore import DocStore
from hsearch.storage.manifest import Manifest

SEGMENTS = "segments"


class SegmentReaders:
    def __init__(self, folder: Path, name: str, start: int, end: int):
        self.name, self.start, self.end = name, start, end
        try:
            self.doc_rows = np.load(folder / "doc_rows.npy", mmap_mode="r")
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
        self.docs = DocStore(folder / "docs.sqlite")
        self.bm25 = BM25Index(folder / "bm25", self.manifest.config.get("bm25_tokenizer", "en_stem")) \
            if self.manifest.config.get("bm25", True) else None
        self.local = SegmentSource(self.segments)
        remote = open_remote(CollectionConfig.from_dict(self.manifest.config), folder, self.manifest, self.dead_chunks)
        self.sources = [s for s in (ReaderSource("bm25", self.bm25) if self.bm25 else None, self.local, remote) if s]

    @property
    def n_chunks(self) -> int:
        return int((self._ends - self._starts).sum()) - len(self.dead_chunks)

    def live(self, ids: np.ndarray) -> np.ndarray:
        """Mask of chunk ids that belong to this snapshot and are not deleted."""
        ids = np.asarray(ids, dtype=np.int64)
        seg = np.searchsorted(self._starts, ids, side="right") - 1
        ok = seg >= 0
        ok[ok] &= ids[ok] < self._ends[seg[ok]]
        if len(self.dead_chunks):
            ok &= ~np.isin(ids, self.dead_chunks)
        return ok

    def scope(self, where=()) -> Scope:
        """What a query with metadata filter `where` may see in this snapshot."""
        return Scope(where, self.live, self.docs.filtered_chunk_ids)

    def allow(self, allowed: np.ndarray | None):
        """An `allow(ids) -> mask` for the stores: live, and in `allowed` when a filter is set."""
        if allowed is None:
            return self.live
        return lambda ids: self.live(ids) & np.isin(ids, allowed)

    def by_segment(self, ids: np.ndarray):
        """Yield (segment readers, positions into ids) for the ids each segment holds."""
        return self.local.by_segment(ids)

    def doc_rows(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.int64)
        for s, pos in self.by_segment(ids):
            out[pos] = s.doc_rows[ids[pos] - s.start]
        return out
