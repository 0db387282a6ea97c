"""Dense store: FAISS inner-product search over L2-normalised vectors, one index per segment.

`flat` is exact; `hnsw` is approximate (its recall is measured in benchmarks/); `auto` picks flat
below `HNSW_FROM` vectors. Row i of the FAISS index is the segment's i-th id, so deletes and
filters become a FAISS IDSelector applied inside the search (before the top-k is cut).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsearch.errors import InputError

from .base import Allow

HNSW_FROM = 50_000
KINDS = ("auto", "flat", "hnsw")


def _faiss():
    import faiss

    # faiss-cpu 1.15 defaults this to 128000, sending every batch below it down a per-query loop ~20x
    # slower than BLAS; 20 is the long-standing upstream value.
    faiss.cvar.distance_compute_blas_threshold = 20
    return faiss


def write_dense(folder: Path, ids: np.ndarray, vectors: np.ndarray, kind: str = "auto",
                hnsw_m: int = 32, ef_construction: int = 200) -> dict:
    if kind not in KINDS:
        raise InputError(f"unknown dense index {kind!r}; choose from {', '.join(KINDS)}")
    faiss = _faiss()
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(vectors.shape[1]) if vectors.ndim == 2 and vectors.shape[0] else 0
    if kind == "auto":
        kind = "hnsw" if len(vectors) >= HNSW_FROM else "flat"
    if dim:
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        index.add(vectors)
        faiss.write_index(index, str(folder / "dense.faiss"))
    np.save(folder / "dense_ids.npy", np.asarray(ids, dtype=np.int64))
    meta = {"kind": kind, "dim": dim, "count": int(len(ids))}
    (folder / "dense.json").write_text(json.dumps(meta))
    return meta


class DenseReader:
    def __init__(self, folder: Path, ef_search: int = 128):
        self.meta = json.loads((folder / "dense.json").read_text())
        self.ids = np.load(folder / "dense_ids.npy", mmap_mode="r")
        self.index = None
        if self.meta["count"]:
            faiss = _faiss()
            self.index = faiss.read_index(str(folder / "dense.faiss"))
            if self.meta["kind"] == "hnsw":
                self.index.hnsw.efSearch = ef_search

    def __len__(self) -> int:
        return int(self.meta["count"])

    def search(self, query: np.ndarray, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        faiss = _faiss()
        params = None
        if allow is not None:
            mask = allow(np.asarray(self.ids))
            if not mask.any():
                return np.empty(0, np.int64), np.empty(0, np.float32)
            if not mask.all():
                self._bits = np.packbits(mask, bitorder="little")  # kept alive while FAISS reads it
                sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bits))
                params = (faiss.SearchParametersHNSW(sel=sel, efSearch=self.index.hnsw.efSearch)
                          if self.meta["kind"] == "hnsw" else faiss.SearchParameters(sel=sel))
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, rows = self.index.search(q, min(k, len(self)), params=params)
        keep = rows[0] >= 0
        return np.asarray(self.ids)[rows[0][keep]], scores[0][keep]

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.float32)
        if self.index is None or len(ids) == 0:
            return out
        pos = np.searchsorted(self.ids, ids)  # ids are ascending within a segment
        pos = np.minimum(pos, len(self.ids) - 1)
        hit = np.asarray(self.ids)[pos] == ids
        if hit.any():
            vecs = self.index.reconstruct_batch(pos[hit].astype(np.int64))
            out[hit] = vecs @ np.asarray(query, dtype=np.float32)
        return out
