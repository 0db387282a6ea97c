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
