"""The local backend: hsearch's own stores in segment folders (FAISS, the learned-sparse inverted index,
the compressed token store) and tantivy BM25, behind the source and sink protocols of base.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsearch.index.dense import write_dense
from hsearch.index.kernels import top_k
from hsearch.index.multivector import write_multivector
from hsearch.index.sparse import write_sparse
from hsearch.types import WHOLE

from .base import Scope


# Signals whose stores' `search` returns exactly the float32 that their `score` gives for the same chunk
# (sparse: one summation order on every path, index/sparse.py; bm25: tantivy scores a chunk the same
# alone or in a top-k), so a chunk they retrieved keeps its score instead of being scored again. Dense
# is scored again: FAISS's search kernels and the re-scoring loop may differ in the last bit (flat
# search does, and which SIMD code FAISS runs depends on the CPU).
EXACT_SEARCH_SCORES = frozenset({"sparse", "bm25"})


def _collect(source, first: dict, depth: int, score: dict, scope: Scope, extra: np.ndarray):
    found = {s: source.search(s, q, depth, scope) for s, q in first.items()}
    out = {}
    if len(found) == 1 and not len(extra):  # one top-k: its ids are distinct already
        (signal, (got_ids, got)), = found.items()
        order = np.argsort(got_ids)
        ids = got_ids[order]
        if signal in score and signal in EXACT_SEARCH_SCORES:
            out[signal] = got[order]
    else:
        ids = np.unique(np.concatenate([np.asarray(extra, np.int64)] + [f[0] for f in found.values()]))
    for s, q in score.items():
        if s in out:
            continue
        if s in found and s in EXACT_SEARCH_SCORES:
            got_ids, got = found[s]
            scores = np.zeros(len(ids), np.float32)
            scores[np.searchsorted(ids, got_ids)] = got
            rest = np.setdiff1d(ids, got_ids, assume_unique=True) if len(ids) > len(got_ids) else ()
            if len(rest):
                scores[np.searchsorted(ids, rest)] = source.score(s, q, rest)
            out[s] = scores
        else:
            out[s] = source.score(s, q, ids)
    return ids, out


class SegmentSource:
    """The stores of every segment of a snapshot: per-segment top-k merged, scores gathered by segment."""

    # signals whose `search` orders equal scores by chunk id, smaller first, across segments too (sparse's
    # positions follow ids; FAISS and tantivy keep their own order), which lets a one-signal plan's cut hold
    # on a tie (query/execute.py, _Ranked._cut_holds)
    ties_by_id = frozenset({"sparse"})

    def __init__(self, segments):
        self.segments = segments
        self.signals = frozenset(s for seg in segments for s in seg.stores)
        self._starts = np.array([s.start for s in segments], dtype=np.int64)

    def collect(self, first, depth, score, scope, extra):
        return _collect(self, first, depth, score, scope, extra)

    def search(self, signal: str, query, k: int, allow) -> tuple[np.ndarray, np.ndarray]:
        """Top-k chunk ids of one signal over every segment (ties: smaller id first, where the stores order
        them so: `ties_by_id`)."""
        ids, scores = [], []
        for seg in self.segments:
            if signal in seg.stores:
                i, s = seg.stores[signal].search(query, k, allow)
                ids.append(i)
                scores.append(s)
        if len(ids) == 1:  # one segment: its store's top-k, best first already
            return ids[0], scores[0].astype(np.float32, copy=False)
        ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        scores = np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32)
        top = top_k(scores, k, ids)
        return ids[top], scores[top]

    def score(self, signal: str, query, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.float32)
        for seg, pos in self.by_segment(ids):
            if signal in seg.stores:
                out[pos] = seg.stores[signal].score(query, ids[pos])
        return out

    def holding(self, lo: int, hi: int):
        """The one segment, where there is one (an optimized collection), if it holds every id from lo to hi; else
        None. One range check instead of a mask per segment."""
        if len(self.segments) == 1:
            s = self.segments[0]
            if s.start <= lo and hi < s.end:
                return s
        return None

    def by_segment(self, ids: np.ndarray):
        """Yield (segment readers, positions into ids: an index array, or a slice) for the ids each segment holds."""
        if len(ids) and (s := self.holding(ids.min(), ids.max())) is not None:
            yield s, slice(None)
            return
        seg = np.searchsorted(self._starts, ids, side="right") - 1
        for i, s in enumerate(self.segments):
            pos = np.nonzero((seg == i) & (ids < s.end))[0]
            if len(pos):
                yield s, pos


class ReaderSource:
    """One reader with `search(query, k, allow)` and `score(query, ids)` serving one signal (BM25), and
    optionally another one for the whole-document view (BM25 statistics are kept per view)."""

    def __init__(self, signal: str, reader, whole=None, check=None):
        # check: a mask every hit must pass besides the scope's (deleted chunks the reader may still hold
        # after a run killed mid-commit, see index/bm25.py)
        self.signals, self.reader, self.whole, self.check = frozenset({signal}), reader, whole, check

    def collect(self, first, depth, score, scope, extra):
        if scope.view == WHOLE and self.whole is not None:
            whole = ReaderSource(next(iter(self.signals)), self.whole, check=self.check)
            return _collect(whole, first, depth, score, scope, extra)
        return _collect(self, first, depth, score, scope, extra)

    def search(self, signal, query, k, allow):
        if self.check is not None:
            allow = (lambda ids, scope=allow: scope(ids) & self.check(ids)) if allow is not None else self.check
        return self.reader.search(query, k, allow)

    def score(self, signal, query, ids):
        return self.reader.score(query, ids)


class LocalSink:
    """Writes the signals it is given into the segment folder: dense (FAISS), sparse, colbert (codes)."""

    def __init__(self, config, signals=("dense", "sparse", "colbert")):
        self.config = config
        self.signals = set(signals) - (set() if config.store_colbert else {"colbert"})

    def write(self, folder: Path, ids: np.ndarray, reps: list, docs: list, views=None) -> None:
        # views: the writer keeps them in the segment folder (views.npy), read by the snapshot
        c = self.config
        if "dense" in self.signals:
            write_dense(folder / "dense", ids, np.stack([r.dense for r in reps]), c.dense_index)
        if "sparse" in self.signals:
            write_sparse(folder / "sparse", ids, [r.sparse for r in reps], quantize=c.sparse_quantize)
        if "colbert" in self.signals:
            write_multivector(folder / "colbert", ids, [r.colbert for r in reps], codec=c.colbert_codec)

    def commit(self, generation, deleted) -> None:  # the manifest's tombstones hide deleted chunks
        pass

    def recover(self, manifest, dead_chunks) -> None:  # the writer removes unlisted segment folders
        pass

    def close(self) -> None:
        pass
