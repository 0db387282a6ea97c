"""Inverted index of learned sparse term weights (the BGE-M3 lexical signal).

A document is {token id: weight > 0}; score(q, p) = sum over shared token ids of q[t] * p[t].

Segment folder layout (every array a memory-mappable `.npy`; doc position = rank of the doc's id):
    meta.json         format, version, n_docs, n_terms, n_postings, quantize, scale, weight_dtype
    ids.npy           int64 [n_docs]        global chunk ids, ascending (so position order == id order)
    terms.npy         int64 [n_terms]       distinct token ids, ascending
    term_ptr.npy      int64 [n_terms + 1]   postings of terms[i] are post_*[term_ptr[i]:term_ptr[i+1]]
    post_docs.npy     int32 [n_postings]    doc positions, ascending within each term
    post_weights.npy  W     [n_postings]
    doc_ptr.npy       int64 [n_docs + 1]    forward index (CSR): doc i owns doc_*[doc_ptr[i]:doc_ptr[i+1]]
    doc_terms.npy     int32 [n_postings]    token ids, ascending within each doc
    doc_weights.npy   W     [n_postings]
W is float32, or with `quantize=True` uint8/uint16 holding ceil(100 * w) (computed in float64), as
BGE-M3's own evaluation did; scores are then sum(q[t] * stored[t]) / 100. Query weights are never
quantised. Both paths add a doc's contributions in ascending token order in float64, so `search`
and `score` give bitwise-equal float32 scores for the same doc.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.index.base import Allow

FORMAT, VERSION, SCALE = "hsearch.sparse", 1, 100
_ARRAYS = ("ids", "terms", "term_ptr", "post_docs", "post_weights", "doc_ptr", "doc_terms", "doc_weights")


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.float32)


def write_sparse(folder: Path, ids: np.ndarray, docs: list[dict[int, float]], quantize: bool = False) -> None:
    """Write one segment for `docs[i]` under global id `ids[i]` into `folder` (created if missing).

    Token ids must lie in [0, 2**31); weights must be finite and >= 0 (zeros are dropped). Raises
    InputError on duplicate ids, mismatched lengths, or a quantised weight above 655.35.
    """
    folder = Path(folder)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) != len(docs):
        raise InputError(f"write_sparse: {len(ids)} ids for {len(docs)} docs; pass one id per doc")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if len(ids) > 1 and np.any(ids[1:] == ids[:-1]):
        raise InputError("write_sparse: duplicate ids; every chunk needs its own id")
    # The only Python-level loop: flattening the dicts, in id order, into flat arrays.
    ordered = [docs[i] for i in order]
    lengths = np.fromiter((len(d) for d in ordered), np.int64, len(ordered))
    total = int(lengths.sum())
    terms = np.fromiter(itertools.chain.from_iterable(d.keys() for d in ordered), np.int64, total)
    weights = np.fromiter(itertools.chain.from_iterable(d.values() for d in ordered), np.float64, total)
    if total and (terms.min() < 0 or terms.max() >= 2**31):
        raise InputError("write_sparse: token ids must lie in [0, 2**31)")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise InputError("write_sparse: weights must be finite and >= 0")
    pos = np.repeat(np.arange(len(ordered), dtype=np.int64), lengths)
    keep = weights > 0
    pos, terms, weights = pos[keep], terms[keep], weights[keep]
    if quantize:
        weights = np.ceil(SCALE * weights)
        top = weights.max() if len(weights) else 0
        if top > np.iinfo(np.uint16).max:
            raise InputError(f"write_sparse: weight {top / SCALE} too large to quantise; use quantize=False")
        weights = weights.astype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)
    else:
        weights = weights.astype(np.float32)
    # Forward order: by doc position, then token id. One sort of a packed int64 key (both < 2**31);
    # keys are unique (dict keys), so the faster unstable sort is exact.
    fwd = np.argsort((pos << 31) | terms)
    pos, terms, weights = pos[fwd], terms[fwd], weights[fwd]
    doc_ptr = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(np.bincount(pos, minlength=len(ids)), out=doc_ptr[1:])
    # Inverted order: by token id, then doc position (same packed-key trick).
    inv = np.argsort((terms << 31) | pos)
    t_sorted = terms[inv]
    starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]]) if len(inv) else np.empty(0, np.int64)
    arrays = {
        "ids": ids, "terms": t_sorted[starts], "term_ptr": np.r_[starts, len(inv)].astype(np.int64),
        "post_docs": pos[inv].astype(np.int32), "post_weights": weights[inv],
        "doc_ptr": doc_ptr, "doc_terms": terms.astype(np.int32), "doc_weights": weights,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS:
        np.save(folder / f"{name}.npy", arrays[name])
    meta = {"format": FORMAT, "version": VERSION, "n_docs": len(ids), "n_terms": len(starts),
            "n_postings": len(inv), "quantize": bool(quantize), "scale": SCALE if quantize else 1,
            "weight_dtype": str(weights.dtype)}
    # meta.json last: its presence marks a complete segment.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) over the pairs, without a Python loop."""
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)


def _ranges_reference(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends)] + [np.empty(0, np.int64)])


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; ties go to the smaller index."""
    if k < len(scores):
        # argpartition finds the k-th best value; keep every score reaching it so ties sort by index.
        kth = scores[np.argpartition(-scores, k - 1)[:k]].min()
        idx = np.flatnonzero(scores >= kth)
    else:
        idx = np.arange(len(scores))
    return idx[np.lexsort((idx, -scores[idx]))[:k]]


def _top_k_reference(scores: np.ndarray, k: int) -> np.ndarray:
    return np.array(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:max(k, 0)], np.int64)


def _query_arrays(query: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Query token ids ascending (fixes the float summation order) with their float64 weights."""
    t = np.fromiter(query.keys(), np.int64, len(query))
    w = np.fromiter(query.values(), np.float64, len(query))
    o = np.argsort(t)
    return t[o], w[o]


class SparseReader:
    """Read-only, memory-mapped view of one sparse segment. Use `SparseReader.open(folder)`."""

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]):
        self.meta = meta
        self.scale = float(meta["scale"])
        self.ids, self.terms, self.term_ptr = arrays["ids"], arrays["terms"], arrays["term_ptr"]
        self.post_docs, self.post_weights = arrays["post_docs"], arrays["post_weights"]
        self.doc_ptr, self.doc_terms, self.doc_weights = arrays["doc_ptr"], arrays["doc_terms"], arrays["doc_weights"]

    @classmethod
    def open(cls, folder: Path) -> SparseReader:
        """Memory-map the segment in `folder`; CollectionError if it is missing or of another format."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise CollectionError(f"{folder}: not a {FORMAT} v{VERSION} segment; rebuild the index")
            arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
        except (OSError, ValueError, KeyError) as e:
            raise CollectionError(f"{folder}: unreadable sparse segment ({e}); rebuild the index") from e
        if len(arrays["ids"]) != meta["n_docs"] or len(arrays["post_docs"]) != meta["n_postings"]:
            raise CollectionError(f"{folder}: sparse segment arrays disagree with meta.json; rebuild")
        return cls(meta, arrays)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: dict[int, float], k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (ids int64, scores float32), best first, ties to the smaller id.

        Only docs scoring > 0 are hits; `allow(ids) -> bool mask` filters before the cut. Reads only
        the postings of the query's own terms.
        """
        if k <= 0 or not query or len(self.terms) == 0:
            return _empty()
        qt, qw = _query_arrays(query)
        at = np.minimum(np.searchsorted(self.terms, qt), len(self.terms) - 1)
        hit = self.terms[at] == qt
        at, qw = at[hit], qw[hit]
        if len(at) == 0:
            return _empty()
        # Term-major concatenation of contiguous slices: each doc's terms arrive in ascending order.
        lo, hi = self.term_ptr[at], self.term_ptr[at + 1]
        docs = np.concatenate([self.post_docs[a:b] for a, b in zip(lo, hi)])
        contrib = np.concatenate([self.post_weights[a:b].astype(np.float64) * w for a, b, w in zip(lo, hi, qw)])
        acc = np.bincount(docs, weights=contrib, minlength=len(self.ids))
        cand = np.flatnonzero(acc > 0)
        if allow is not None and len(cand):
            cand = cand[np.asarray(allow(self.ids[cand]), dtype=bool)]
        scores = (acc[cand] / self.scale).astype(np.float32)
        best = cand[_top_k(scores, k)]  # cand ascends by position == by id, so ties go to the smaller id
        return np.asarray(self.ids[best], np.int64), (acc[best] / self.scale).astype(np.float32)

    def score(self, query: dict[int, float], ids: np.ndarray) -> np.ndarray:
        """Exact float32 scores for `ids` (0 for ids this segment lacks or that share no term)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.zeros(len(ids), np.float32)
        if not query or len(self.ids) == 0 or len(ids) == 0:
            return out
        qt, qw = _query_arrays(query)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        rows = np.flatnonzero(self.ids[pos] == ids)
        lo, hi = self.doc_ptr[pos[rows]], self.doc_ptr[pos[rows] + 1]
        span = _ranges(lo, hi)
        t = self.doc_terms[span]
        row = np.repeat(np.arange(len(rows)), hi - lo)
        j = np.minimum(np.searchsorted(qt, t), len(qt) - 1)
        m = qt[j] == t
        contrib = self.doc_weights[span][m].astype(np.float64) * qw[j[m]]
        acc = np.bincount(row[m], weights=contrib, minlength=len(rows))
        out[rows] = (acc / self.scale).astype(np.float32)
        return out

    def doc(self, id: int) -> dict[int, float]:
        """Stored terms of one doc as {token id: weight} (de-quantised); {} if the id is absent."""
        p = int(np.searchsorted(self.ids, id))
        if p == len(self.ids) or self.ids[p] != id:
            return {}
        a, b = self.doc_ptr[p], self.doc_ptr[p + 1]
        return {int(t): float(w) / self.scale for t, w in zip(self.doc_terms[a:b], self.doc_weights[a:b])}


def open_sparse(folder: Path) -> SparseReader:
    """Same as `SparseReader.open(folder)`."""
    return SparseReader.open(folder)
