"""A reader's consistent view of a collection: the manifest it loaded, its segments' readers,
the tombstones, and the shared BM25 and document stores filtered through them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
            self.stores = {"dense": DenseReader(folder / "dense"), "sparse": open_sparse(folder / "sparse")}
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

    def allow(self, allowed: np.ndarray | None):
        """An `allow(ids) -> mask` for the stores: live, and in `allowed` when a filter is set."""
        if allowed is None:
            return self.live
        return lambda ids: self.live(ids) & np.isin(ids, allowed)

    def by_segment(self, ids: np.ndarray):
        """Yield (segment readers, positions into ids) for the ids each segment holds."""
        seg = np.searchsorted(self._starts, ids, side="right") - 1
        for i, s in enumerate(self.segments):
            pos = np.nonzero((seg == i) & (ids < s.end))[0]
            if len(pos):
                yield s, pos

    def doc_rows(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.int64)
        for s, pos in self.by_segment(ids):
            out[pos] = s.doc_rows[ids[pos] - s.start]
        return out
