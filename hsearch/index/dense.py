"""Dense store: FAISS inner-product search over L2-normalised vectors, one index per segment.

`flat` is exact; `hnsw` is approximate (its recall is measured in benchmarks/); `auto` picks flat
below `HNSW_FROM` vectors. Row i of the FAISS index is the segment's i-th id, so deletes and
filters become a FAISS IDSelector applied inside the search (before the top-k is cut).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.storage import arrays

from .base import Allow, Positions

# A segment this large gets an HNSW graph: a flat scan costs ~0.3 ms per 1,000 vectors of 384 dims on
# one core (benchmarks/RESULTS.md, "Segments"), the merge policy makes segments of ~20k chunks, and Qdrant
# switches to its graph at a similar size (full_scan_threshold 10,000 KB, ~6.7k such vectors).
HNSW_FROM = 10_000
# HNSW search effort when a query sets none. Recall@10 against exact search on 100k synthetic chunks
# (benchmarks/bench_segments.py; synthetic data, not an evaluation set): 128 0.939, 160 0.965, 192 0.978,
# 256 0.990. 192 keeps a margin over the 0.95 target for embeddings harder to index than the synthetic ones.
EF_SEARCH = 192
KINDS = ("auto", "flat", "hnsw")


def _faiss():
    # faiss-cpu's own distance_compute_blas_threshold is left as shipped: this store searches one query
    # at a time, and lowering it (an earlier version set 20) sends that query down the BLAS path, much
    # slower than faiss's own scan (benchmarks/RESULTS.md, "Query path, session 10": faiss-flat alone on
    # SciFact 0.73 ms with 20, 0.16 ms as shipped).
    import faiss

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


def merge_dense(folder: Path, readers: list, keeps: list[np.ndarray], kind: str = "auto") -> dict:
    """Write one segment holding the vectors of `readers` where `keeps[i]` (a bool mask over reader
    i's rows) is set. The vectors are read back exactly (flat and HNSW-flat store them uncompressed);
    `kind` is chosen again for the merged size, so small flat segments can become one HNSW graph."""
    ids, vecs = [], []
    dim = max((int(r.meta["dim"]) for r in readers), default=0)
    for r, keep in zip(readers, keeps):
        rows = np.flatnonzero(keep)
        if r.index is None or len(rows) == 0:
            continue
        ids.append(np.asarray(r.ids)[rows])
        vecs.append(r.index.reconstruct_n(0, len(r))[rows])
    ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    vecs = np.concatenate(vecs) if vecs else np.empty((0, dim), np.float32)
    return write_dense(folder, ids, vecs, kind)


class DenseReader:
    def __init__(self, folder: Path, ef_search: int = EF_SEARCH):
        self.meta = json.loads((folder / "dense.json").read_text())
        self.ids = arrays.load(folder / "dense_ids.npy", mmap_mode="r")
        self._ids = np.asarray(self.ids)  # one array object: cached masks are keyed by it
        self._positions = Positions(self._ids)
        self._selectors: dict[int, tuple] = {}  # id(mask) -> (mask, bitmap, FAISS selector)
        self.index = None
        if self.meta["count"]:
            faiss = _faiss()
            self.index = faiss.read_index(str(folder / "dense.faiss"))
            if self.meta["kind"] == "hnsw":
                self.index.hnsw.efSearch = ef_search
            if self.index.ntotal != len(self):  # `score` reads the rows in place: never past FAISS's own
                raise CollectionError(f"{folder}: dense.faiss holds {self.index.ntotal} vectors, dense.json says "
                                      f"{len(self)}; rebuild the collection with `hsearch index`")
            # the raw float32 rows (flat and HNSW-flat keep them uncompressed), read in place by `score`
            flat = self.index if self.meta["kind"] == "flat" else faiss.downcast_index(self.index.storage)
            self._vectors = faiss.rev_swig_ptr(flat.get_xb(), len(self) * self.index.d).reshape(len(self), self.index.d)
            self._vectors.flags.writeable = False

    def __len__(self) -> int:
        return int(self.meta["count"])

    def search(self, query: np.ndarray, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, inner products). `allow` may be a query's Scope (backends/base.py): then the mask
        of this segment's ids, and the FAISS bitmap made of it, are computed once per snapshot and
        filter, and its `ef_search` sets the HNSW search effort."""
        if self.index is None or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        faiss = _faiss()
        hnsw = self.meta["kind"] == "hnsw"
        ef = (getattr(allow, "ef_search", None) or self.index.hnsw.efSearch) if hnsw else None
        sel = None
        if allow is not None:
            mask = getattr(allow, "allow_store", allow)(self._ids)
            if not mask.any():
                return np.empty(0, np.int64), np.empty(0, np.float32)
            if not mask.all():
                sel = self._selectors.get(id(mask))
                if sel is None or sel[0] is not mask:
                    bits = np.packbits(mask, bitorder="little")  # kept alive with the selector that reads it
                    sel = (mask, bits, faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)))
                    if len(self._selectors) > 64:  # masks of filters no longer asked for
                        self._selectors.clear()
                    self._selectors[id(mask)] = sel
        params = None
        if hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(int(ef), k))
            if sel is not None:
                params.sel = sel[2]
        elif sel is not None:
            params = faiss.SearchParameters(sel=sel[2])
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, rows = self.index.search(q, min(k, len(self)), params=params)
        keep = rows[0] >= 0
        return self._ids[rows[0][keep]], scores[0][keep]

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.float32)
        if self.index is None or len(ids) == 0:
            return out
        pos, hit = self._positions(ids)
        if hit.any():
            vecs = np.take(self._vectors, pos[hit], axis=0)
            q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
            if len(q) != self.index.d:  # the C loop would read past the query
                raise ValueError(f"a query of {len(q)} dimensions for vectors of {self.index.d}")
            out[hit] = _inner_products(q, vecs)
        return out


def _inner_products(q: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """q . each row of vecs, row by row: a chunk's score must not depend on the candidates beside it (BLAS gemv's
    summation order does). FAISS's own loop where it is one inner product per row (faster than NumPy's
    multiply-and-sum; on this machine it also equals the HNSW search's scores, which nothing relies on: FAISS
    picks its SIMD code per CPU). Its by-index variant forks an OpenMP team per call, many times slower while
    BLAS threads spin; up to 12 dimensions FAISS takes several rows at once, so NumPy there."""
    if len(q) <= 12:
        return (vecs * q).sum(axis=1)
    faiss = _faiss()
    out = np.empty(len(vecs), np.float32)
    faiss.fvec_inner_products_ny(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(vecs), len(q), len(vecs))
    return out
