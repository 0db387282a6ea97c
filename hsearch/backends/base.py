"""Where vectors live: the two protocols between the engine and a vector backend.

The planner never asks a backend for one thing at a time. It hands every *source* (something that
holds some signals) the whole step at once, so a remote engine answers a query in one round trip:

    Source.collect(first, depth, score, scope, extra) -> (ids, {signal: scores})
        ids    sorted, unique: `extra` plus each `first` signal's top-`depth` chunks inside `scope`
        scores for every signal in `score`, its score of each of those ids (0 where it has none)

`query/execute.py` asks the sources in order, passing the candidates found so far as `extra`, then
asks each source that saw a smaller union to score the newcomers (with `first` empty). Local sources
come first (BM25, hsearch's own segment stores), a remote one last: it then scores the complete union
in the same call that retrieves its own candidates. A signal is served by the first source listing it.

The writer puts each commit's vectors into a *sink*:

    Sink.write(folder, ids, reps, docs, views)
                                          before the commit: the segment folder being written, chunk ids,
                                          their `Encoded`s and owning `Document`s, and each chunk's view
                                          (hsearch/types.py; None: one view); durable on return
    Sink.commit(generation, deleted)      after the manifest of `generation` is saved; `deleted`: the chunks
                                          it tombstoned
    Sink.recover(manifest, dead_chunks)   at writer start: drop what an interrupted run left, re-apply deletes
    Sink.close()                          at the end of a write run

Implementations: `hsearch/backends/local.py` (FAISS, the sparse inverted index and the compressed
token store in segment folders) and `hsearch/backends/qdrant.py` (one Qdrant collection).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

VECTOR_SIGNALS = ("dense", "sparse", "colbert")


class Scope:
    """What a query may see: the snapshot's live chunks, narrowed by the plan's metadata filter.

    Local stores take `allow` (a mask over ids, applied before the top-k cut). A remote backend maps
    `where` to its own filter and uses `live` and `matching` only where it cannot.
    """

    def __init__(self, where: tuple, live: Callable[[np.ndarray], np.ndarray],
                 matching: Callable[[tuple], np.ndarray], view: int | None = None, ef_search: int | None = None):
        # view: PASSAGE or WHOLE (hsearch/types.py) when the collection has both; `live` already applies it
        self.where, self.live, self._matching, self.view = tuple(where), live, matching, view
        self.ef_search = ef_search  # HNSW search effort of this query (None: the reader's default)
        # A snapshot keeps one Scope per (where, view) for its life (tombstones and metadata are fixed
        # for it), so the filter's chunk ids ("where") and the mask of each store's whole id array are
        # computed once, not on every query: id(array) -> (array, mask), the array held so that its id
        # is never reused meanwhile. Shared by the copies `with_ef_search` makes.
        self._cache: dict = {}

    def with_ef_search(self, ef_search: int | None) -> Scope:
        """This scope (sharing what it has computed) with another HNSW search effort."""
        if ef_search == self.ef_search:
            return self
        other = Scope.__new__(Scope)
        other.__dict__.update(self.__dict__)
        other.ef_search = ef_search
        return other

    def allow_store(self, ids: np.ndarray) -> np.ndarray:
        """`allow` of a store's whole id array (the same array object on every call), computed once."""
        hit = self._cache.get(id(ids))
        if hit is None or hit[0] is not ids:
            hit = (ids, self.allow(ids))
            self._cache[id(ids)] = hit
        return hit[1]

    def matching(self, where: tuple) -> np.ndarray:
        """Sorted chunk ids whose document matches `where` (resolved in the document store)."""
        return self._matching(tuple(where))

    def __call__(self, ids: np.ndarray) -> np.ndarray:  # a Scope is itself an `Allow` (index/base.py)
        return self.allow(ids)

    def allow(self, ids: np.ndarray) -> np.ndarray:
        mask = self.live(ids)
        if self.where:
            if "where" not in self._cache:  # resolved once, on first use: a remote-only plan never needs it
                self._cache["where"] = self.matching(self.where)
            mask &= np.isin(ids, self._cache["where"])
        return mask


def owners(sources) -> dict:
    """signal -> the source that serves it: the first of `sources` listing it."""
    out = {}
    for src in sources:
        for s in src.signals:
            out.setdefault(s, src)
    return out


class Source(Protocol):
    signals: frozenset

    def collect(self, first: dict[str, Any], depth: int, score: dict[str, Any], scope: Scope,
                extra: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ids (sorted, distinct) of `extra` and of each `first` signal's top-`depth` in `scope`, and
        each `score` signal's score of them."""
        ...


class Sink(Protocol):
    def write(self, folder, ids: np.ndarray, reps: list, docs: list, views: np.ndarray | None = None) -> None: ...

    def commit(self, generation: int, deleted: np.ndarray) -> None: ...

    def recover(self, manifest, dead_chunks: np.ndarray) -> None: ...

    def close(self) -> None: ...
