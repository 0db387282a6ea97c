"""Two thin drivers for the same Qdrant backend code (qdrant.py), one per Python binding.

    ClientDriver  qdrant-client: a server or cluster (http[s]://...), or its local mode (a folder, or
                  ":memory:"), a pure-Python re-implementation meant for tests
    EdgeDriver    qdrant-edge-py: Qdrant's Rust engine as one in-process shard in a folder

Both take the neutral requests of qdrant.py (`Search`, `Filter`, conditions as tuples) and return
plain Python values, so everything above them is shared. Each open location is kept once per process
(both embedded engines lock their folder against a second opener, even in the same process).
"""
from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

from hsearch.errors import CollectionError, InputError

EXTRA = 'pip install "hsearch[qdrant]"'
HNSW_M, HNSW_EF_CONSTRUCT = 32, 200  # hsearch's FAISS HNSW settings (hsearch/index/dense.py)
_OPEN: dict = {}


def is_url(location: str | None) -> bool:
    return bool(location) and str(location).startswith(("http://", "https://"))


def require(backend: str) -> None:
    """Raise InputError naming the extra when the binding of `backend` is not installed."""
    module = {"qdrant": "qdrant_client", "qdrant-edge": "qdrant_edge"}[backend]
    try:
        __import__(module)
    except ImportError:
        package = {"qdrant": "qdrant-client", "qdrant-edge": "qdrant-edge-py"}[backend]
        raise InputError(f"--backend {backend} needs {package}, which is not installed; {EXTRA}") from None


def open_driver(backend: str, location: str, collection: str):
    key = (backend, location)
    if key not in _OPEN:
        try:
            require(backend)
        except InputError as e:
            raise CollectionError(str(e)) from None
        _OPEN[key] = (ClientDriver if backend == "qdrant" else EdgeDriver)(location)
    driver = _OPEN[key]
    return driver.bind(collection) if hasattr(driver, "bind") else driver


@atexit.register
def close_all() -> None:
    while _OPEN:
        _key, driver = _OPEN.popitem()
        try:
            driver.close()
        except Exception:  # noqa: BLE001 - closing at exit: nothing left to tell the user
            pass


def _fail(where: str, action: str, e: Exception) -> CollectionError:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "already accessed" in text or "WouldBlock" in text:
        return CollectionError(f"the embedded Qdrant engine in {where} is open in another process; it allows "
                               "one process at a time (use a Qdrant server, --url http://..., for concurrent access)")
    if "Connection refused" in text or "ConnectError" in type(e).__name__ or "timed out" in text.lower():
        return CollectionError(f"cannot reach Qdrant at {where} ({text}); start the server (see "
                               "deploy/qdrant-cluster.yml) or give the right --url")
    return CollectionError(f"Qdrant at {where}: {action} failed ({text})")


# ------------------------------------------------------------------------------------------ client


class ClientDriver:
    def __init__(self, location: str):
        from qdrant_client import QdrantClient, models

        self.m, self.where, self.remote = models, location, is_url(location)
        try:
            if self.remote:
                self.client = QdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY"), timeout=60)
            elif location == ":memory:":
                self.client = QdrantClient(location=":memory:")
            else:
                Path(location).mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=location)
        except Exception as e:  # noqa: BLE001 - any failure to open becomes one clear message
            raise _fail(location, "opening", e) from None
        self.name = None

    def bind(self, collection: str) -> "ClientDriver":
        bound = object.__new__(ClientDriver)
        bound.__dict__.update(self.__dict__)
        bound.name = collection
        return bound

    def _call(self, action, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (CollectionError, InputError):
            raise
        except Exception as e:  # noqa: BLE001
            raise _fail(self.where, action, e) from None

    def schema(self) -> dict | None:
        if not self._call("listing collections", self.client.collection_exists, self.name):
            return None
        params = self._call("reading the collection", self.client.get_collection, self.name).config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
        return {"dense": vectors["dense"].size if "dense" in vectors else None,
                "colbert": vectors["colbert"].size if "colbert" in vectors else None,
                "sparse": "sparse" in (params.sparse_vectors or {})}

    def create(self, dim: int, colbert_dim: int | None, shards: int | None, replication: int | None) -> None:
        m = self.m
        vectors = {"dense": m.VectorParams(size=dim, distance=m.Distance.DOT,
                                           hnsw_config=m.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT))}
        if colbert_dim:  # re-ranking only: no graph (m=0) over tens of vectors per chunk
            vectors["colbert"] = m.VectorParams(  # on disk: a query reads only its ~200 candidates
                size=colbert_dim, distance=m.Distance.DOT, hnsw_config=m.HnswConfigDiff(m=0), on_disk=True,
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM))
        self._call("creating the collection", self.client.create_collection, self.name, vectors_config=vectors,
                   sparse_vectors_config={"sparse": m.SparseVectorParams()}, shard_number=shards,
                   replication_factor=replication)
        if self.remote:  # local mode has no payload indexes (and warns about them)
            self._call("indexing cid", self.client.create_payload_index, self.name, "cid",
                       m.PayloadSchemaType.INTEGER)

    def count(self) -> int:
        return self._call("counting", self.client.count, self.name, exact=True).count

    def upsert(self, ids, vectors: list[dict], payloads: list[dict]) -> None:
        m = self.m
        points = [m.PointStruct(id=int(i), vector={k: m.SparseVector(indices=v[0], values=v[1])
                                                   if k == "sparse" else v for k, v in vec.items()}, payload=p)
                  for i, vec, p in zip(ids, vectors, payloads)]
        self._call("upserting", self.client.upsert, self.name, points, wait=True)

    def delete(self, ids) -> None:
        self._call("deleting", self.client.delete, self.name, self.m.PointIdsList(points=[int(i) for i in ids]),
                   wait=True)

    def delete_where(self, flt) -> None:
        self._call("deleting", self.client.delete, self.name, self.m.FilterSelector(filter=self._filter(flt)),
                   wait=True)

    def flush(self) -> None:  # upserts wait for the server's acknowledgement; local mode writes through
        pass

    def optimize(self) -> None:  # a server indexes in the background
        pass

    def close(self) -> None:
        self.client.close()

    def _filter(self, flt):
        if flt is None:
            return None
        m = self.m

        def cond(c):
            kind, key, value = c
            if kind == "ids":
                return m.HasIdCondition(has_id=[int(i) for i in value])
            if kind == "empty":
                return m.IsEmptyCondition(is_empty=m.PayloadField(key=key))
            if kind == "match":
                return m.FieldCondition(key=key, match=m.MatchValue(value=value))
            return m.FieldCondition(key=key, range=m.Range(**value))
        return m.Filter(must=[cond(c) for c in flt.must] or None, must_not=[cond(c) for c in flt.must_not] or None)

    def _query(self, s):
        if s.signal == "sparse":
            return self.m.SparseVector(indices=s.vector[0], values=s.vector[1])
        return s.vector

    def _params(self, s):  # local mode is always exact (and warns about search params)
        return self.m.SearchParams(hnsw_ef=s.hnsw_ef, exact=s.exact) if self.remote and (s.exact or s.hnsw_ef) else None

    def query_batch(self, searches) -> list[list[tuple[int, float]]]:
        m = self.m

        def prefetch(p):
            return m.Prefetch(query=self._query(p), using=p.signal, limit=p.limit, filter=self._filter(p.flt),
                              params=self._params(p))
        reqs = [m.QueryRequest(query=self._query(s), using=s.signal, limit=s.limit, filter=self._filter(s.flt),
                               params=self._params(s), prefetch=[prefetch(p) for p in s.prefetch] or None,
                               with_payload=False, with_vector=False) for s in searches]
        res = self._call("querying", self.client.query_batch_points, self.name, requests=reqs)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in res]


# -------------------------------------------------------------------------------------------- edge


class EdgeDriver:
    CONFIG = "edge_config.json"

    def __init__(self, location: str):
        import qdrant_edge

        self.q, self.where, self.path = qdrant_edge, location, Path(location)
        self.shard = None
        if (self.path / self.CONFIG).exists():
            self.shard = self._call("opening", qdrant_edge.EdgeShard.load, str(self.path))

    def _call(self, action, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (CollectionError, InputError):
            raise
        except Exception as e:  # noqa: BLE001 - the binding raises plain Exception
            raise _fail(self.where, action, e) from None

    def schema(self) -> dict | None:
        if self.shard is None:
            return None
        cfg = json.loads((self.path / self.CONFIG).read_text())
        vectors = cfg.get("vectors") or {}
        return {"dense": vectors.get("dense", {}).get("size"), "colbert": vectors.get("colbert", {}).get("size"),
                "sparse": "sparse" in (cfg.get("sparse_vectors") or {})}

    def create(self, dim: int, colbert_dim: int | None, shards: int | None, replication: int | None) -> None:
        q = self.q
        vectors = {"dense": q.EdgeVectorParams(size=dim, distance=q.Distance.Dot, hnsw_config=q.HnswIndexConfig(
            m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000))}
        if colbert_dim:
            vectors["colbert"] = q.EdgeVectorParams(
                size=colbert_dim, distance=q.Distance.Dot,
                multivector_config=q.MultiVectorConfig(q.MultiVectorComparator.MaxSim),
                hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000))
        config = q.EdgeConfig(vectors=vectors, sparse_vectors={"sparse": q.EdgeSparseVectorParams()})
        self.shard = self._call("creating the shard", q.EdgeShard.create, str(self.path), config)
        self._call("indexing cid", self.shard.update,
                   q.UpdateOperation.create_field_index("cid", q.PayloadSchemaType.Integer))

    def count(self) -> int:
        return self._call("counting", self.shard.count, self.q.CountRequest(exact=True))

    def upsert(self, ids, vectors: list[dict], payloads: list[dict]) -> None:
        q = self.q
        points = [q.Point(int(i), {k: q.SparseVector(v[0], v[1]) if k == "sparse" else v for k, v in vec.items()},
                          p) for i, vec, p in zip(ids, vectors, payloads)]
        self._call("upserting", self.shard.update, q.UpdateOperation.upsert_points(points))

    def delete(self, ids) -> None:
        self._call("deleting", self.shard.update, self.q.UpdateOperation.delete_points([int(i) for i in ids]))

    def delete_where(self, flt) -> None:
        self._call("deleting", self.shard.update, self.q.UpdateOperation.delete_points_by_filter(self._filter(flt)))

    def flush(self) -> None:
        self._call("flushing", self.shard.flush)

    def optimize(self) -> None:  # builds the HNSW graph of large segments, in-process
        self._call("optimizing", self.shard.optimize)

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None

    def _filter(self, flt):
        if flt is None:
            return None
        q = self.q

        def cond(c):
            kind, key, value = c
            if kind == "ids":
                return q.HasIdCondition({int(i) for i in value})
            if kind == "empty":
                return q.IsEmptyCondition(key)
            if kind == "match":
                return q.FieldCondition(key, match=q.MatchValue(value))
            return q.FieldCondition(key, range=q.RangeFloat(**value))
        return q.Filter(must=[cond(c) for c in flt.must] or None, must_not=[cond(c) for c in flt.must_not] or None)

    def _query(self, s):
        q = self.q
        vec = q.SparseVector(s.vector[0], s.vector[1]) if s.signal == "sparse" else s.vector
        return q.Query.Nearest(vec, using=s.signal)

    def _params(self, s):
        return self.q.SearchParams(hnsw_ef=s.hnsw_ef, exact=s.exact) if (s.exact or s.hnsw_ef) else None

    def query_batch(self, searches) -> list[list[tuple[int, float]]]:
        q = self.q
        if self.shard is None:
            return [[] for _ in searches]

        def prefetch(p):
            return q.Prefetch(limit=p.limit, query=self._query(p), filter=self._filter(p.flt), params=self._params(p))
        reqs = [q.QueryRequest(limit=s.limit, query=self._query(s), prefetches=[prefetch(p) for p in s.prefetch] or None,
                               filter=self._filter(s.flt), params=self._params(s), with_payload=False,
                               with_vector=False) for s in searches]
        res = self._call("querying", self.shard.query_batch, q.QueryBatchRequest(reqs))
        return [[(int(p.id), float(p.score)) for p in r] for r in res]
