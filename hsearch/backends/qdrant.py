"""The Qdrant backend: one Qdrant collection with named vectors `dense`, `sparse` (learned weights) and,
unless the multi-vectors stay in hsearch's compressed store, `colbert` (MAX_SIM, no graph: re-ranking
only). Documents, metadata and BM25 stay local (SQLite, tantivy); so does the token store when used.

Reading: `QdrantSource.collect` is one batched Query API call. Each requested scoring signal is one
request whose prefetches are the first-stage searches (dense top-depth, sparse top-depth) plus the
candidates other sources found (`extra`, as a has_id prefetch); Qdrant re-scores the union of the
prefetches with the request's own vector. That is hsearch's plan exactly (the union re-scored by every
signal, fused by hsearch's own fusion functions), so results equal the local engine's.
Qdrant's MAX_SIM sums over query tokens; hsearch's MaxSim is the mean, so colbert scores are divided
by the query's token count. A sparse re-score leaves out points sharing no term: their score is 0.

Visibility follows the manifest: points carry `cid` (the chunk id) in their payload, and a reader
filters `cid < next_chunk_id` of its manifest (a running writer's points stay invisible); deleted
chunks are removed after the commit that tombstoned them, and until `qdrant.json` says so, readers
also exclude them by id (and drop any that slip through).

Metadata filters become payload filters: `m.<key>` holds metadata as the text SQLite compares for
= and != (2020 -> "2020", true -> "1"), `n.<key>` numbers for < > <= >=; `path`, `doc_id`, `title` are
top-level keys. Globs (`path~docs/*`) have no Qdrant equivalent: they are resolved in SQLite and sent
as ids. Strings that are not numbers never match a numeric comparison (SQLite would compare them as 0).
"""
from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.index.dense import HNSW_FROM
from hsearch.storage.atomic import write_json_atomic
from hsearch.types import PASSAGE, WHOLE

from .local import LocalSink
from .qdrant_drivers import is_url, open_driver, require

STATE = "qdrant.json"  # {"collection": name, "purged": generation whose tombstoned chunks are gone}
# One upsert request: at most this many points or numbers (~10 MB as JSON; a server refuses requests
# above service.max_request_size_mb, 32 MB by default, and multi-vectors grow fast).
UPSERT_POINTS, UPSERT_FLOATS = 256, 1_000_000
MAX_EXCLUDED_IDS = 50_000  # above this, readers rely on the writer's purge and drop stragglers after
HNSW_EF = 128  # hsearch's FAISS efSearch (hsearch/index/dense.py)
_COLUMNS = {"path": "path", "id": "doc_id", "doc_id": "doc_id", "title": "title"}
_RANGES = {"<": "lt", ">": "gt", "<=": "lte", ">=": "gte"}


@dataclass
class Filter:
    must: list = field(default_factory=list)  # conditions: ("match"|"range"|"ids"|"empty", key, value)
    must_not: list = field(default_factory=list)


@dataclass
class Search:
    signal: str
    vector: object  # dense: list; sparse: (indices, values); colbert: list of lists
    limit: int
    flt: Filter | None = None
    exact: bool = False
    hnsw_ef: int | None = None
    prefetch: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------- settings


def settle(config, folder: Path, built=None):
    """Check a collection's Qdrant settings and fill in what must be fixed at creation."""
    from dataclasses import replace

    if built is not None and built.backend == config.backend and not config.qdrant_collection:
        config = replace(config, qdrant_collection=built.qdrant_collection)
    require(config.backend)
    url = config.backend_url
    if config.backend == "qdrant-edge" and is_url(url):
        raise InputError("--backend qdrant-edge runs in-process on a folder; give --url a path, or use "
                         "--backend qdrant for a server")
    embedded = not is_url(url)
    if embedded and ((config.qdrant_shards or 1) > 1 or (config.qdrant_replication or 1) > 1):
        raise InputError("an embedded Qdrant engine is a single shard; --shards and --replication need a Qdrant "
                         "cluster (--backend qdrant --url http://...)")
    if url and embedded and url != ":memory:":
        url = str(Path(url).expanduser().resolve())
    name = config.qdrant_collection
    if not name:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(folder).resolve().name).strip("-") or "collection"
        name = f"hsearch-{stem}-{uuid.uuid4().hex[:8]}" if not embedded else "hsearch"
    return replace(config, backend_url=url, qdrant_collection=name)


def _location(config, folder: Path) -> str:
    if config.backend_url:
        return config.backend_url
    return str(folder / ("qdrant-edge" if config.backend == "qdrant-edge" else "qdrant"))


def _multivector(config) -> bool:
    return bool(config.store_colbert and config.qdrant_multivector)


def _connect(config, folder: Path):
    return open_driver(config.backend, _location(config, folder), config.qdrant_collection or "hsearch")


def _state(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# ------------------------------------------------------------------------------------------ payload


def _text(v):
    """A metadata value as SQLite's cast(json_extract(...) as text) gives it; None stays missing."""
    if isinstance(v, dict):
        return {k: t for k, x in v.items() if (t := _text(x)) is not None}
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float, str)):
        return str(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _number(v):
    if isinstance(v, dict):
        return {k: n for k, x in v.items() if (n := _number(x)) is not None}
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            x = float(v)
            return x if math.isfinite(x) else None
        except ValueError:
            return None
    return None


def payload(chunk_id: int, doc, view: int | None = None) -> dict:
    p = {"cid": int(chunk_id), "doc_id": doc.id, "title": doc.title or "", "m": _text(doc.metadata or {}),
         "n": _number(doc.metadata or {})}
    if view is not None:  # a long-context collection's chunks: passage or whole (hsearch/types.py)
        p["v"] = view
    if doc.path is not None:
        p["path"] = doc.path
    return p


def where_filter(where, scope) -> Filter:
    """hsearch's --where clauses as a payload filter (globs as ids resolved in SQLite)."""
    f = Filter()
    for fld, op, value in where:
        text_key = _COLUMNS.get(fld, f"m.{fld}")
        if op == "~" or (op in _RANGES and fld in _COLUMNS):
            f.must.append(("ids", None, scope.matching(((fld, op, value),))))
        elif op == "=":
            f.must.append(("match", text_key, value))
        elif op == "!=":  # SQL: a missing field is NULL, which never compares unequal
            f.must_not += [("empty", text_key, None), ("match", text_key, value)]
        elif op in _RANGES:
            try:
                number = float(value)
            except ValueError:
                raise InputError(f"--where {fld}{op}{value}: '{value}' is not a number") from None
            f.must.append(("range", f"n.{fld}", {_RANGES[op]: number}))
        else:
            raise InputError(f"unknown --where operator {op!r}; use = != < > <= >= or ~ (glob)")
    return f


def _vector(signal: str, x):
    if signal == "sparse":
        keys = sorted(k for k, w in x.items() if w > 0)
        return [int(k) for k in keys], [float(x[k]) for k in keys]
    return np.asarray(x, dtype=np.float32).tolist()


def _empty(signal: str, x) -> bool:
    return x is None or len(x) == 0 or (signal == "sparse" and not any(w > 0 for w in x.values()))


# --------------------------------------------------------------------------------------------- sink


class QdrantSink:
    """Upserts each commit's dense and sparse vectors (and multi-vectors, unless kept local) into Qdrant."""

    def __init__(self, config, folder: Path, manifest):
        self.config, self.folder = config, folder
        self.local = LocalSink(config, signals=() if _multivector(config) else ("colbert",))
        self.driver = _connect(config, folder)
        self._ensure_collection(manifest)

    def _ensure_collection(self, manifest) -> None:
        c, d, encoder = self.config, self.driver, manifest.encoder
        want = {"dense": encoder.get("dim"), "colbert": encoder.get("colbert_dim") if _multivector(c) else None}
        have = d.schema()
        where = f"Qdrant collection {c.qdrant_collection!r} at {_location(c, self.folder)}"
        ours = _state(self.folder).get("collection") == c.qdrant_collection
        if have is None and ours and manifest.next_chunk_id:
            raise CollectionError(f"{where} is gone, and with it this collection's vectors; rebuild the "
                                  "collection into a new --collection folder")
        if have is None:
            d.create(want["dense"], want["colbert"], c.qdrant_shards, c.qdrant_replication)
        else:
            for name, size in want.items():
                if have.get(name) != size:
                    got = f"{name} vectors of size {have.get(name)}" if have.get(name) else f"no {name} vectors"
                    need = f"size {size}" if size else "none"
                    raise CollectionError(f"{where} has {got}, this collection's model and settings need {need}; "
                                          "name another collection (--qdrant-collection) or delete that one")
            if not ours and d.count():
                raise CollectionError(f"{where} already holds {d.count()} points this hsearch collection did not "
                                      "write; name another one with --qdrant-collection")
        if not ours:
            write_json_atomic(self.folder / STATE, {"collection": c.qdrant_collection, "purged": 0})

    def write(self, folder: Path, ids: np.ndarray, reps: list, docs: list, views=None) -> None:
        self.local.write(folder, ids, reps, docs)
        batch, floats = [], 0
        for i, r in enumerate(reps):
            size = np.size(r.dense) + len(r.sparse or ()) + (np.size(r.colbert) if _multivector(self.config) else 0)
            if batch and (len(batch) == UPSERT_POINTS or floats + size > UPSERT_FLOATS):
                self._upsert(ids, reps, docs, batch, views)
                batch, floats = [], 0
            batch.append(i)
            floats += size
        if batch:
            self._upsert(ids, reps, docs, batch, views)
        self.driver.flush()

    def _upsert(self, ids, reps, docs, batch, views=None) -> None:
        vectors = []
        for i in batch:
            r = reps[i]
            vec = {"dense": _vector("dense", r.dense)}
            if not _empty("sparse", r.sparse):  # Qdrant has no empty sparse vector: absent means 0
                vec["sparse"] = _vector("sparse", r.sparse)
            if _multivector(self.config):
                vec["colbert"] = _vector("colbert", r.colbert)
            vectors.append(vec)
        self.driver.upsert([int(ids[i]) for i in batch], vectors,
                           [payload(ids[i], docs[i], None if views is None else int(views[i])) for i in batch])

    def _delete(self, ids) -> None:
        ids = np.asarray(ids, np.int64)
        for s in range(0, len(ids), 10_000):
            self.driver.delete(ids[s:s + 10_000])
        self.driver.flush()

    def commit(self, generation: int, deleted) -> None:
        """After the manifest of `generation`: drop the chunks it tombstoned, then record that every chunk
        tombstoned so far is gone (readers stop excluding them by id)."""
        if len(deleted):
            self._delete(deleted)
        write_json_atomic(self.folder / STATE, {"collection": self.config.qdrant_collection, "purged": generation})

    def recover(self, manifest, dead_chunks) -> None:
        self.driver.delete_where(Filter(must=[("range", "cid", {"gte": float(manifest.next_chunk_id)})]))
        stale = _state(self.folder).get("purged", 0) < manifest.generation
        self.commit(manifest.generation, dead_chunks if stale else ())

    def close(self) -> None:
        self.driver.optimize()


# ------------------------------------------------------------------------------------------- source


class QdrantSource:
    """Dense and sparse retrieval and re-scoring (and MaxSim, when Qdrant holds the multi-vectors)."""

    def __init__(self, config, folder: Path, manifest, dead_chunks: np.ndarray):
        self.config, self.folder = config, folder
        self.signals = frozenset({"dense", "sparse"} | ({"colbert"} if _multivector(config) else set()))
        self.next_chunk_id, self.dead = manifest.next_chunk_id, dead_chunks
        self.exclude = _state(folder).get("purged", 0) < manifest.generation and len(dead_chunks) > 0
        self._driver = None

    @property
    def driver(self):
        if self._driver is None:  # connect on first use: opening a snapshot never touches the network
            self._driver = _connect(self.config, self.folder)
        return self._driver

    def _filter(self, scope) -> Filter:
        f = where_filter(scope.where, scope)
        f.must.append(("range", "cid", {"lt": float(self.next_chunk_id)}))
        if scope.view is not None:  # the other view's chunks out; chunks written without a view stay in
            f.must_not.append(("match", "v", PASSAGE if scope.view == WHOLE else WHOLE))
        if self.exclude and len(self.dead) <= MAX_EXCLUDED_IDS:
            f.must_not.append(("ids", None, self.dead))
        return f

    def _search(self, signal, query, limit, flt, prefetch=()) -> Search:
        # as the local dense store: exact for flat, and for auto below HNSW_FROM chunks
        kind = self.config.dense_index
        exact = signal == "dense" and (kind == "flat" or (kind == "auto" and self.next_chunk_id < HNSW_FROM))
        return Search(signal, _vector(signal, query), limit, flt, exact=exact,
                      hnsw_ef=HNSW_EF if signal == "dense" and not exact else None, prefetch=list(prefetch))

    def collect(self, first, depth, score, scope, extra):
        extra = np.asarray(extra, np.int64)
        if not self.next_chunk_id:  # nothing committed yet (the Qdrant collection may not exist)
            return extra, {s: np.zeros(len(extra), np.float32) for s in score}
        flt = self._filter(scope)
        pre = [self._search(s, q, depth, flt) for s, q in first.items() if not _empty(s, q)]
        usable = {s: q for s, q in score.items() if not _empty(s, q)}
        outer = usable or {s: q for s, q in first.items() if not _empty(s, q)}  # no scores asked: ids only
        searches = []
        for s, q in outer.items():
            p = list(pre)
            if len(extra):
                p.append(Search(s, _vector(s, q), len(extra), Filter(flt.must + [("ids", None, extra)], flt.must_not),
                                exact=s == "dense"))
            if p:
                searches.append(self._search(s, q, sum(x.limit for x in p), flt, prefetch=p))
        results = self.driver.query_batch(searches) if searches else []
        found = [np.array([i for i, _s in r], np.int64) for r in results]
        ids = np.unique(np.concatenate([extra] + found))
        ids = ids[np.isin(ids, extra) | scope.live(ids)]  # a deleted chunk not yet purged never leaves here
        table = {s: np.zeros(len(ids), np.float32) for s in score}
        for search, r in zip(searches, results):
            if search.signal in usable and r:
                got = np.array([i for i, _s in r], np.int64)
                val = np.array([v for _i, v in r], np.float64)
                if search.signal == "colbert":  # Qdrant's MAX_SIM sums over query tokens; hsearch's is the mean
                    val /= len(usable["colbert"])
                pos = np.searchsorted(ids, got)
                ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == got)
                table[search.signal][pos[ok]] = val[ok]
        return ids, table
