"""The protocol every store follows (after tantivy: writer -> files -> reader).

A store's files live in one immutable segment folder. `write` produces them once; `open` returns a
reader that memory-maps them. Readers never change files; a new commit writes a new segment.

Ids are int64 chunk ids, global to the collection. `search` returns the best `k` ids of the
segment with their scores, best first, never more than exist; `allow` (a callable mapping an int64
array of ids to a bool mask) removes deleted or filtered chunks *before* the top-k is cut.
`score` returns the signal's score for given ids (0 for ids the segment lacks where that is the
signal's natural value). The multi-vector store only scores: ColBERT never retrieves on its own
(query/plan.py), it re-ranks what the other signals found.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

Allow = Callable[[np.ndarray], np.ndarray]


class Reader(Protocol):
    def __len__(self) -> int: ...

    def search(self, query, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def score(self, query, ids: np.ndarray) -> np.ndarray: ...


class Positions:
    """Where given ids sit in a segment's ascending id array. A segment written in one commit holds one run
    of consecutive ids (until a merge drops deleted ones), so a position is then the id minus the first:
    no binary search, whose steps over a large id array miss the cache (most of re-scoring candidates in a
    large segment, in a profile)."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids
        n = len(ids)
        self.first = int(ids[0]) if n and int(ids[-1]) - int(ids[0]) == n - 1 else None

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position per id, found mask); positions of missing ids are 0 or clipped (mask them)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = len(self.ids)
        if n == 0 or ids.size == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if self.first is not None:
            pos = ids - self.first
            found = (pos >= 0) & (pos < n)
            return np.where(found, pos, 0), found
        pos = np.minimum(np.searchsorted(self.ids, ids), n - 1)
        return pos, self.ids[pos] == ids
