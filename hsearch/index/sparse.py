"""Inverted index of learned sparse term weights (the BGE-M3 lexical signal).

A document is {token id: weight > 0}; score(q, p) = sum over shared token ids of q[t] * p[t].

Segment folder layout (every array a memory-mappable `.npy`; doc position = rank of the doc's id):
    meta.json         format, version, n_docs, n_terms, n_postings, quantize, scale, weight_dtype,
                      weights_positive (every stored weight > 0; absent in older segments)
    ids.npy           int64 [n_docs]        global chunk ids, ascending (so position order == id order)
    terms.npy         int64 [n_terms]       distinct token ids, ascending
    term_ptr.npy      int64 [n_terms + 1]   postings of terms[i] are post_*[term_ptr[i]:term_ptr[i+1]]
    term_max.npy      W     [n_terms]       largest stored weight of each term (the pruning bound);
                                            optional: for segments written before it, derived once
    post_docs.npy     int32 [n_postings]    doc positions, ascending within each term
    post_weights.npy  W     [n_postings]
    doc_ptr.npy       int64 [n_docs + 1]    forward index (CSR): doc i owns doc_*[doc_ptr[i]:doc_ptr[i+1]]
    doc_terms.npy     int32 [n_postings]    token ids, ascending within each doc
    doc_weights.npy   W     [n_postings]
W is float32, or with `quantize=True` uint8/uint16 holding ceil(100 * w) (computed in float64), as
BGE-M3's own evaluation did; scores are then sum(q[t] * stored[t]) / 100. Query weights are never
quantised. Every path adds a doc's contributions in ascending token order in float64, so `search`
(pruned or exhaustive) and `score` give bitwise-equal float32 scores for the same doc.

Search is exact top-k with dynamic pruning: MaxScore (Turtle & Flood 1995) done term-at-a-time
with vectorised numpy steps. A query term t bounds any doc's contribution by
ub[t] = q[t] * term_max[t].
 (1) Threshold: the first n_docs/64 docs (at least 64 k; a prefix of every posting list) are scored
     exhaustively; their k-th best score theta is a lower bound of the final k-th score.
 (2) Essential terms: the terms costing the most postings per unit of bound, whose bounds sum below
     theta, are "non-essential": a doc holding none of the other ("essential") terms cannot reach
     theta. Only essential postings are accumulated (one bincount; terms in >= 1/8 of the docs are
     added as dense columns, built on first use and kept by the reader).
 (3) theta is raised to (nearly) the final k-th score: the docs with the best partial scores get
     their non-essential terms looked up and their full scores taken.
 (4) Candidates are the docs whose partial score plus the remaining bounds reaches theta; the
     non-essential terms are looked up for them only (a dense-column gather, or a binary search in
     the postings), in decreasing bound order, re-pruning after each.
 (5) The few survivors are scored exactly through the forward index and cut to k with the
     exhaustive path's tie rule.
Pruning only drops a doc whose upper bound is below theta * (1 - 1e-6) minus a float64 rounding
margin: the relative slack is far above float64 summation error and float32's half-ulp, so no doc
whose float32 score could tie or beat the k-th is dropped, and the top-k (ids, float32 scores, tie
order) is identical to exhaustive scoring. Queries with few postings, non-positive weights or a
large k take the exhaustive path, which `search(..., prune=False)` forces.

Where numba imports, the exhaustive path is a compiled loop (sparse_kernel.py): one pass over the query's
postings into a float64 accumulator, one over the docs they touched into a top-k heap, with the same sums
in the same order. It is the faster path up to ~80k query postings, and pruning only pays beyond
(benchmarks/bench_sparse.py); `search(..., prune=False)` is NumPy's exhaustive scoring, the reference.
"""
from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.index.base import Allow, Positions
from hsearch.index.compiled import loops
from hsearch.index.kernels import ranges, top_k
from hsearch.storage.arrays import load as load_npy

FORMAT, VERSION, SCALE = "hsearch.sparse", 1, 100
_ARRAYS = ("ids", "terms", "term_ptr", "post_docs", "post_weights", "doc_ptr", "doc_terms", "doc_weights")
_OPTIONAL = ("term_max",)  # segments written before it lack it; the reader derives it on first use

# Pruning knobs, measured with benchmarks/bench_sparse.py data (Zipf terms, 10k-100k docs, k=10).
# Pruning has a fixed cost (~80 numpy calls plus a few passes over n_docs: 0.2-0.5 ms); exhaustive
# scoring costs ~10 ns per posting plus a top-k over every hit. Exhaustive was as fast or faster
# below ~30k query postings (10k-100k docs) or below ~n_docs / 3 postings (100k docs).
_PRUNE_MIN_POSTINGS = 30_000
_PRUNE_MIN_POSTINGS_PER_DOC = 1 / 3
# ... and only in segments of at least 20k docs and 500 * k docs: below that, pruning's fixed cost is
# not repaid (benchmarks/RESULTS.md, "Sparse pruning: from which segment size it pays"; on SciFact's
# 6k chunks exhaustive scoring is the faster one, see its sparse store call there).
_PRUNE_MIN_DOCS = 20_000
_PRUNE_MIN_DOCS_PER_K = 500
_PRUNE_MAX_K = 256        # larger k: scoring 4k seeds and k survivors costs what pruning saves
_SAMPLE = 64              # the first n_docs / _SAMPLE docs are scored exhaustively for theta ...
_SAMPLE_K = 64            # ... but at least _SAMPLE_K * k docs
_SEEDS = 256              # best candidates fully scored to raise the threshold ...
_SEEDS_K = 4              # ... but at least _SEEDS_K * k (their k-th full score is the threshold)
_FINAL = 16               # stop refining with lookups once this few candidates remain
_DENSE = 8                # terms in >= 1/_DENSE of the docs are looked up through a dense column
_SLACK = 1e-6             # relative; see the module docstring
# Exhaustive scoring is a compiled loop (sparse_kernel.py) where numba imports: one pass over the query's postings
# and one over the docs they touched, where NumPy's passes each cover every doc (1.7-3.5x faster from 1k to 100k
# docs, benchmarks/bench_sparse.py). It costs ~4.5 ns a posting, NumPy's MaxScore pruning ~0.4-0.6 ms whatever the
# postings: with the loop at hand, pruning only from this many query postings (at 100k docs: level at ~83k).
_PRUNE_MIN_POSTINGS_COMPILED = 80_000
_NO_MASK = np.zeros(0, np.bool_)
# query weights above it: q * w > 0 for every stored w > 0 (the smallest float32 times it is a normal float64)
_POSITIVE = 1e-200


def _compiled():
    """sparse_kernel.py's loops; None where compiled loops are turned off (compiled.py) or numba does not import."""
    return loops("sparse_kernel")


class _Scratch(threading.local):
    """The compiled loop's buffers, one set per thread (many threads may query one snapshot), made on its first
    search in that thread. After a search they hold its query's float64 sum for every doc (`query`, and
    `touched` docs to zero before the next one): the exact scores `score` gives, read instead of recomputed
    when a plan re-scores another signal's candidates for the same query."""

    def __init__(self, n: int):
        self.n, self.bufs, self.touched, self.query = n, None, 0, None

    def buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.bufs is None:
            self.bufs = (np.zeros(self.n, np.float64), np.zeros(self.n, np.bool_), np.empty(self.n, np.int32))
        return self.bufs


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
        weights = weights.astype(_stored_dtype(top))
    else:
        weights = weights.astype(np.float32)
    _write_arrays(folder, ids, pos, terms, weights, quantize)


def _stored_dtype(top) -> np.dtype:
    """The narrowest unsigned type holding quantised weights up to `top`."""
    return np.dtype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)


def merge_sparse(folder: Path, readers: list, keeps: list[np.ndarray]) -> None:
    """Write one segment holding the docs of `readers` (segments of one collection, ids ascending
    across them) where `keeps[i]` (a bool mask over reader i's docs) is set. The stored weights are
    copied, never re-quantised, so every kept doc scores bitwise as before."""
    quantize = bool(readers and readers[0].meta["quantize"])
    ids, pos, terms, weights, base = [], [], [], [], 0
    for r, keep in zip(readers, keeps):
        p = np.flatnonzero(keep)
        lo, hi = r._dp[p], r._dp[p + 1]
        span = ranges(lo, hi)
        ids.append(r._ids[p])
        pos.append(base + np.repeat(np.arange(len(p), dtype=np.int64), hi - lo))
        terms.append(r._dt[span].astype(np.int64))
        weights.append(r._dw[span])
        base += len(p)
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dt))
    weights = cat(weights, np.float32)
    if quantize:
        weights = weights.astype(_stored_dtype(weights.max() if len(weights) else 0))
    _write_arrays(Path(folder), cat(ids, np.int64), cat(pos, np.int64), cat(terms, np.int64), weights, quantize)


def _write_arrays(folder: Path, ids, pos, terms, weights, quantize: bool) -> None:
    """The segment files from the flat (doc position, token id, stored weight) triples; `ids` ascending."""
    keep = weights > 0  # a weight whose float32 rounds to 0 adds nothing: dropped, so every stored one is > 0
    if not keep.all():
        pos, terms, weights = pos[keep], terms[keep], weights[keep]
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
    post_weights = weights[inv]
    arrays = {
        "ids": ids, "terms": t_sorted[starts], "term_ptr": np.r_[starts, len(inv)].astype(np.int64),
        "term_max": _term_max(post_weights, starts),
        "post_docs": pos[inv].astype(np.int32), "post_weights": post_weights,
        "doc_ptr": doc_ptr, "doc_terms": terms.astype(np.int32), "doc_weights": weights,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS + _OPTIONAL:
        np.save(folder / f"{name}.npy", arrays[name])
    meta = {"format": FORMAT, "version": VERSION, "n_docs": len(ids), "n_terms": len(starts),
            "n_postings": len(inv), "quantize": bool(quantize), "scale": SCALE if quantize else 1,
            "weight_dtype": str(weights.dtype), "weights_positive": True}
    # meta.json last: its presence marks a complete segment.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _term_max(post_weights: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Largest weight of each term's postings (every term has at least one posting)."""
    if len(starts) == 0:
        return np.empty(0, post_weights.dtype)
    return np.maximum.reduceat(np.asarray(post_weights), np.asarray(starts, np.int64))


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
        self._term_max = None if arrays.get("term_max") is None else np.asarray(arrays["term_max"])
        self._columns: dict[int, np.ndarray] = {}  # term index -> dense weights, see _column
        self._positive: bool | None = None  # see weights_positive
        # Plain ndarray views of the same memory maps: slicing and indexing an np.memmap pays for the
        # subclass on every call, several microseconds on the few-hundred-call search path.
        self._ids, self._terms, self._tp = (np.asarray(a) for a in (self.ids, self.terms, self.term_ptr))
        self._pd, self._pw = np.asarray(self.post_docs), np.asarray(self.post_weights)
        self._dp, self._dt, self._dw = (np.asarray(a) for a in (self.doc_ptr, self.doc_terms, self.doc_weights))
        self._scratch = _Scratch(len(self._ids))
        self._positions = Positions(self._ids)

    @classmethod
    def open(cls, folder: Path) -> SparseReader:
        """Memory-map the segment in `folder`; CollectionError if it is missing or of another format."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise CollectionError(f"{folder}: not a {FORMAT} v{VERSION} segment; rebuild the index")
            arrays = {n: load_npy(folder / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
            arrays |= {n: load_npy(folder / f"{n}.npy", mmap_mode="r") for n in _OPTIONAL
                       if (folder / f"{n}.npy").exists()}
        except (OSError, ValueError, KeyError) as e:
            raise CollectionError(f"{folder}: unreadable sparse segment ({e}); rebuild the index") from e
        if (len(arrays["ids"]) != meta["n_docs"] or len(arrays["post_docs"]) != meta["n_postings"]
                or len(arrays.get("term_max", arrays["terms"])) != len(arrays["terms"])):
            raise CollectionError(f"{folder}: sparse segment arrays disagree with meta.json; rebuild")
        return cls(meta, arrays)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def weights_positive(self) -> bool:
        """Whether every stored weight is > 0: meta.json says so for segments written since it records it
        (a float32 rounding to 0 is dropped when written), else one pass over the weights, once."""
        if self._positive is None:
            self._positive = bool(self.meta.get("weights_positive")) or not (len(self._pw) and self._pw.min() <= 0)
        return self._positive

    @property
    def term_max(self) -> np.ndarray:
        """Largest stored weight per term; read from term_max.npy, or derived once (one pass over
        post_weights) for segments written before that file existed."""
        if self._term_max is None:
            self._term_max = _term_max(self._pw, self._tp[:-1])
        return self._term_max

    def search(self, query: dict[int, float], k: int, allow: Allow | None = None,
               prune: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (ids int64, scores float32), best first, ties to the smaller id.

        Only docs scoring > 0 are hits; `allow(ids) -> bool mask` filters before the cut (it may be
        called more than once, on subsets of the segment's ids). Reads only the postings of the
        query's own terms (with pruning, often a fraction of them, plus the forward entries of a few
        candidate docs). `prune=False` forces exhaustive scoring of every query posting; both paths
        return bitwise-identical results.
        """
        if k <= 0 or not query or len(self.terms) == 0:
            return _empty()
        loop = _compiled() if prune else None
        if loop is not None:
            qt, qw, at, lo, hi, postings = loop.query_terms(self._terms, self._tp, np.fromiter(query.keys(), np.int64, len(query)),
                                                            np.fromiter(query.values(), np.float64, len(query)))
        else:
            qt, qw = _query_arrays(query)
            at = np.searchsorted(self._terms, qt)
            np.minimum(at, len(self._terms) - 1, out=at)
            hit = self._terms[at] == qt
            at, qw, qt = at[hit], qw[hit], qt[hit]
            lo, hi = self._tp[at], self._tp[at + 1]
            postings = int((hi - lo).sum())
        if len(at) == 0:
            return _empty()
        n = len(self._ids)
        found = None
        if (prune and k <= _PRUNE_MAX_K and postings >= (_PRUNE_MIN_POSTINGS if loop is None else _PRUNE_MIN_POSTINGS_COMPILED)
                and postings >= _PRUNE_MIN_POSTINGS_PER_DOC * n and n >= max(_PRUNE_MIN_DOCS, _PRUNE_MIN_DOCS_PER_K * k)):
            found = self._search_pruned(qt, qw, at, lo, hi, k, allow)
        scratch = self._scratch
        scratch.query = None
        if found is None and loop is not None:
            mask = _NO_MASK if allow is None else self._allowed(allow, slice(None))
            try:
                positive = bool(qw.min() > _POSITIVE and self.weights_positive)
                pos, scores, scratch.touched = loop.top_k_postings(self._pd, self._pw, lo, hi, qw, self.scale, min(k, n),
                                                                   mask, *scratch.buffers(), scratch.touched, positive)
            except BaseException:  # the buffers may hold a half-done query: start the next one from fresh ones
                scratch.bufs, scratch.touched = None, 0
                raise
            scratch.query = dict(query)
            return self._ids[pos].astype(np.int64), scores
        if found is None:
            found = self._search_exhaustive(qw, lo, hi, allow)
        pos, acc = found
        scores = (acc / self.scale).astype(np.float32)
        best = top_k(scores, k)  # pos ascends, and position order == id order: ties go to the smaller id
        return self._ids[pos[best]].astype(np.int64), scores[best]

    def _allowed(self, allow: Allow, pos) -> np.ndarray:
        """`allow`'s mask of the docs at positions `pos`: read from its mask of this segment's whole id array
        where it keeps one per snapshot (a query's Scope, backends/base.py: no per-query lookup of tens of
        thousands of hits), else asked for these ids."""
        whole = getattr(allow, "allow_store", None)
        if whole is not None:
            return whole(self._ids)[pos]
        return np.asarray(allow(self._ids[pos]), dtype=bool)

    def _postings(self, sel: np.ndarray, lo: np.ndarray, hi: np.ndarray, qw: np.ndarray):
        """Doc positions and float64 contributions q[t] * w of the query terms `sel`, term after term."""
        if len(sel) == 0:
            return np.empty(0, np.int32), np.empty(0, np.float64)
        d = np.concatenate([self._pd[lo[i]:hi[i]] for i in sel])
        w = np.concatenate([self._pw[lo[i]:hi[i]] for i in sel]).astype(np.float64)
        w *= np.repeat(qw[sel], hi[sel] - lo[sel])
        return d, w

    def _search_exhaustive(self, qw, lo, hi, allow):
        """Every hit (positions ascending) with its float64 score."""
        # Term-major concatenation of contiguous slices: each doc's terms arrive in ascending order.
        d, w = self._postings(np.arange(len(qw)), lo, hi, qw)
        acc = np.bincount(d, weights=w, minlength=len(self._ids))
        cand = np.flatnonzero(acc > 0)
        if allow is not None and len(cand):
            cand = cand[self._allowed(allow, cand)]
        return cand, acc[cand]

    def _exact(self, pos: np.ndarray, qt: np.ndarray, qw: np.ndarray) -> np.ndarray:
        """float64 scores of doc positions `pos` through the forward index. Each doc's terms are added
        in ascending token order, from 0.0, as the inverted paths do: the sums are bitwise equal."""
        kernel = _compiled()
        if kernel is not None:
            return kernel.exact_scores(self._dp, self._dt, self._dw, pos, qt, qw)
        lo, hi = self._dp[pos], self._dp[pos + 1]
        span = ranges(lo, hi)
        t = self._dt[span]
        j = np.searchsorted(qt, t)
        np.minimum(j, len(qt) - 1, out=j)
        m = qt[j] == t
        row = np.repeat(np.arange(len(pos)), hi - lo)[m]
        return np.bincount(row, weights=self._dw[span[m]].astype(np.float64) * qw[j[m]], minlength=len(pos))

    def _threshold(self, scores: np.ndarray, k: int) -> float:
        """k-th largest positive score, a lower bound of the final k-th; 0.0 (no pruning) when there
        are fewer than k, or when float32 would lose its relative precision (subnormal, overflow)."""
        if len(scores) < k:
            return 0.0
        t = float(np.partition(scores, len(scores) - k)[len(scores) - k])  # 0.0: fewer than k positive
        return t if 1e-30 < t / self.scale < 1e37 else 0.0

    def _column(self, t: int) -> np.ndarray:
        """Weights of term index t for every doc (0 where absent), built on first use and kept.

        Only terms in at least 1/_DENSE of the docs get one (search checks), so a column costs at
        most _DENSE times the bytes of the postings it copies."""
        col = self._columns.get(t)
        if col is None:
            a, b = self._tp[t], self._tp[t + 1]
            col = np.zeros(len(self._ids), self._pw.dtype)
            col[self._pd[a:b]] = self._pw[a:b]
            self._columns[t] = col
        return col

    def _lookup(self, t: int, a: int, b: int, q: float, cand: np.ndarray, part: np.ndarray) -> None:
        """Adds term index t's contributions q * w (postings a:b) to the partial scores `part` of
        the int32 doc positions `cand` (ascending): a gather from its dense column for frequent
        terms, else a binary search in its postings."""
        if (b - a) * _DENSE >= len(self._ids):
            part += self._column(t)[cand] * q
            return
        docs = self._pd[a:b]
        p = np.searchsorted(docs, cand)
        np.minimum(p, len(docs) - 1, out=p)
        f = np.flatnonzero(docs[p] == cand)
        part[f] += self._pw[a + p[f]].astype(np.float64) * q

    def _accumulate(self, sel, at, lo, hi, qw):
        """float64 partial scores of every doc over the query terms `sel`, and the doc positions of
        those terms' sparse postings. Terms in at least 1/_DENSE of the docs are added as dense
        columns: one vector add beats scattering that many postings."""
        dense = (hi[sel] - lo[sel]) * _DENSE >= len(self._ids)
        d, w = self._postings(sel[~dense], lo, hi, qw)
        acc = np.bincount(d, weights=w, minlength=len(self._ids)) if len(d) else np.zeros(len(self._ids))
        for i in sel[dense]:
            acc += self._column(at[i]) * qw[i]
        return acc, d

    def _search_pruned(self, qt, qw, at, lo, hi, k, allow):
        """MaxScore (module docstring): the candidates that can still reach the top-k (positions
        ascending) with their exact float64 scores, or None where no threshold could be set."""
        n = len(self._ids)
        df = hi - lo
        ub = qw * self.term_max[at]  # float64; q * w <= q * max w holds after rounding too
        total = float(ub.sum())
        if not (ub.min() > 0 and total < np.inf):
            return None  # a non-positive, NaN or infinite query weight breaks the bounds
        # Absolute margin for float64 rounding: sums of up to len(at) terms (in any order), the
        # bound sums and their running differences each err by less than len(at) * eps * total.
        err = 8 * len(at) * np.finfo(np.float64).eps * total
        # (1) Threshold: score the first docs (positions < x) exhaustively. Their postings are the
        # prefix of every list, and their sums are the exhaustive path's own, hence exact.
        x = min(n, max(n // _SAMPLE, _SAMPLE_K * k))
        key = np.array([x], np.int32)  # an int32 array key: a Python int would convert each list to int64
        cut_at = np.concatenate([lo[i] + np.searchsorted(self._pd[lo[i]:hi[i]], key) for i in range(len(lo))])
        d, w = self._postings(np.arange(len(at)), lo, cut_at, qw)
        sample = np.bincount(d, weights=w, minlength=x)
        if allow is not None:
            sample = sample[self._allowed(allow, slice(0, x))]
        theta = self._threshold(sample, k)
        if theta == 0.0:
            return None
        cut = theta * (1 - _SLACK) - err  # docs whose bound is below cut cannot reach the top-k
        if cut <= 0:
            return None
        # (2) Non-essential terms: the most expensive per unit of bound whose bounds sum below theta.
        rest = np.argsort(ub / df, kind="stable")
        bound = np.cumsum(ub[rest])
        nn = int(np.searchsorted(bound, cut, side="left"))
        skip = rest[:nn][np.argsort(-ub[rest[:nn]], kind="stable")]  # decreasing bound
        remaining = float(bound[nn - 1]) if nn else 0.0  # < cut: docs without essential terms fall short
        acc, d = self._accumulate(np.sort(rest[nn:]), at, lo, hi, qw)
        # (3) Raise theta with the full scores of the docs with the best partial scores: their
        # non-essential terms are looked up (a sum in another order, so a bound within rounding,
        # covered by the slack). The sample's partial scores tell which level the best m reach.
        if nn:
            m = max(_SEEDS, _SEEDS_K * k)
            j = max(x - 1 - m * x // n, 0)  # in the sample: about as many docs above as m in all docs
            level = max(float(np.partition(acc[:x], j)[j]), cut - remaining)
            # Any docs will do (the threshold stays a lower bound): take them from the essential
            # postings rather than scanning all n docs; only dense terms' docs may be missed.
            seeds = np.unique(d[acc[d] >= level]) if len(d) else np.flatnonzero(acc >= level)
            if allow is not None and len(seeds):
                seeds = seeds[self._allowed(allow, seeds)]
            if len(seeds) > m:
                seeds = np.sort(seeds[np.argpartition(acc[seeds], len(seeds) - m)[-m:]])
            full = acc[seeds]
            seeds = seeds.astype(np.int32)
            for i in skip:
                self._lookup(at[i], lo[i], hi[i], qw[i], seeds, full)
            theta = max(theta, self._threshold(full, k))
            cut = theta * (1 - _SLACK) - err
        # (4) Candidates: partial score + remaining bound reaches the threshold; the non-essential
        # terms are looked up for them in decreasing bound order, re-pruning after each.
        cand = np.flatnonzero(acc >= cut - remaining)
        if allow is not None and len(cand):
            cand = cand[self._allowed(allow, cand)]
        part = acc[cand]
        cand = cand.astype(np.int32)  # searchsorted against int32 postings without converting them
        for i in skip:  # decreasing bound: the remaining bound shrinks fastest
            if len(cand) <= _FINAL:
                break
            self._lookup(at[i], lo[i], hi[i], qw[i], cand, part)
            remaining = max(remaining - ub[i], 0.0)
            keep = part >= cut - remaining
            cand, part = cand[keep], part[keep]
        else:  # every term looked up: the partial scores are full ones, whose k-th is a last threshold
            theta = max(theta, self._threshold(part, k))
            keep = part >= theta * (1 - _SLACK) - err
            cand = cand[keep]
        # (5) Exact scores, summed in the same order as the exhaustive path.
        pos = cand.astype(np.int64)
        acc = self._exact(pos, qt, qw)
        keep = acc > 0
        return pos[keep], acc[keep]

    def score(self, query: dict[int, float], ids: np.ndarray) -> np.ndarray:
        """Exact float32 scores for `ids` (0 for ids this segment lacks or that share no term)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.zeros(len(ids), np.float32)
        if not query or len(self.ids) == 0 or len(ids) == 0:
            return out
        pos, found = self._positions(ids)
        rows = np.flatnonzero(found)
        scratch = self._scratch
        if scratch.query is not None and scratch.query == query:  # this thread's last search: its sums, not again
            sums = scratch.bufs[0][pos[rows]]
        else:
            sums = self._exact(pos[rows], *_query_arrays(query))
        out[rows] = (sums / self.scale).astype(np.float32)
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
