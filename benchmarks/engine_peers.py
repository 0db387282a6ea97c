"""Peers for benchmarks/bench_engine.py: the same vectors and texts as an hsearch collection, indexed
and searched by other engines in the same process.

Every peer takes a `Corpus` (chunk ids, texts, and the dense / sparse / multi-vector representations
read back from the hsearch collection) and pre-converted queries, and answers `search(mode, i)` for
query i with the top-k chunk ids. Query conversion into a peer's own types (Python lists, SparseVector,
dicts) happens once before timing, as hsearch's queries arrive already encoded as numpy arrays.

    faiss-flat / faiss-hnsw   FAISS alone (IndexFlatIP; IndexHNSWFlat with hsearch's M, efConstruction, efSearch)
    tantivy                   tantivy alone: chunk id + text (en_stem), the query sanitised as hsearch does
    bm25s                     bm25s (k1=1.2, b=0.75 as tantivy/Lucene; English stopwords; PyStemmer if installed)
    qdrant-edge               Qdrant's engine in-process: dense HNSW + sparse + multivector (MaxSim) in one shard;
                              prefetch dense/sparse, fused (RRF) or re-ranked by MaxSim
    milvus-lite               Milvus Lite (pymilvus MilvusClient on a local file): dense HNSW + sparse inverted
                              index, hybrid_search with RRFRanker / WeightedRanker
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsearch.index.dense import EF_SEARCH

# hsearch's defaults (hsearch/index/dense.py), so that the peers' HNSW graphs do the same work per query
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, EF_SEARCH
RRF_K = 60
WEIGHTS = (0.4, 0.2)  # hsearch's default dense / sparse weights (BGE-M3 README)


@dataclass
class Corpus:
    """One collection's chunks, aligned by position: ids[i] owns texts[i], dense[i], sparse row i, colbert row i."""

    ids: np.ndarray  # int64 chunk ids, ascending
    texts: list
    dense: np.ndarray  # (n, dim) float32
    sp_ptr: np.ndarray  # CSR of the sparse weights (forward index)
    sp_terms: np.ndarray
    sp_weights: np.ndarray
    cb_offsets: np.ndarray | None = None  # token rows of chunk i: cb_flat[cb_offsets[i]:cb_offsets[i+1]]
    cb_flat: np.ndarray | None = None  # (n_tokens, colbert_dim) float32, decoded

    def __len__(self):
        return len(self.ids)

    def sparse_row(self, i):
        a, b = self.sp_ptr[i], self.sp_ptr[i + 1]
        return self.sp_terms[a:b], self.sp_weights[a:b]

    def colbert_row(self, i):
        return self.cb_flat[self.cb_offsets[i]:self.cb_offsets[i + 1]]


@dataclass
class QuerySet:
    texts: list
    dense: np.ndarray  # (nq, dim)
    sparse: list  # dicts {token id: weight}
    colbert: list  # (n_tokens, colbert_dim) arrays


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk (like du), for a file or a folder."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return sum(p.stat().st_blocks * 512 for p in files)


def sanitize(text: str) -> str:
    """hsearch's BM25 query rule (hsearch/index/bm25.py): plain words, never tantivy syntax."""
    words = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\b(AND|OR|NOT|IN)\b", lambda m: m.group(0).lower(), words)


class Peer:
    name = "peer"
    modes: tuple = ()
    notes = ""

    def build(self, corpus: Corpus, folder: Path) -> float:
        """Index the corpus into folder; returns seconds."""
        raise NotImplementedError

    def prepare(self, queries: QuerySet, k: int, depth: int) -> None:
        self.k, self.depth = k, depth

    def search(self, mode: str, i: int) -> np.ndarray:
        raise NotImplementedError

    def size(self) -> int:
        return disk_usage(self.folder)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- faiss


class FaissPeer(Peer):
    modes = ("dense",)

    def __init__(self, kind: str):
        self.kind = kind
        self.name = f"faiss-{kind}"
        self.notes = "IndexFlatIP" if kind == "flat" else (
            f"IndexHNSWFlat M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} efSearch={HNSW_EF_SEARCH}")

    def build(self, corpus, folder):
        import faiss

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        d = corpus.dense.shape[1]
        t = time.perf_counter()
        if self.kind == "flat":
            self.index = faiss.IndexFlatIP(d)
        else:
            self.index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self.index.add(np.ascontiguousarray(corpus.dense, dtype=np.float32))
        seconds = time.perf_counter() - t
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = HNSW_EF_SEARCH
        faiss.write_index(self.index, str(self.folder / "index.faiss"))
        self.ids = corpus.ids
        return seconds

    def prepare(self, queries, k, depth):
        super().prepare(queries, k, depth)
        self.q = np.ascontiguousarray(queries.dense, dtype=np.float32)

    def search(self, mode, i):
        _s, rows = self.index.search(self.q[i:i + 1], self.k)
        return self.ids[rows[0][rows[0] >= 0]]


# -------------------------------------------------------------------------------------------- tantivy


class TantivyPeer(Peer):
    name = "tantivy"
    modes = ("bm25",)
    notes = "chunk_id (fast, stored) + text (en_stem), writer 1 thread, 64 MB heap (as hsearch)"

    def build(self, corpus, folder):
        import tantivy

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        b = tantivy.SchemaBuilder()
        b.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
        b.add_text_field("text", stored=False, tokenizer_name="en_stem")
        t = time.perf_counter()
        self.index = tantivy.Index(b.build(), path=str(self.folder))
        w = self.index.writer(heap_size=64_000_000, num_threads=1)
        for cid, text in zip(corpus.ids.tolist(), corpus.texts):
            w.add_document(tantivy.Document(chunk_id=int(cid), text=text))
        w.commit()
        w.wait_merging_threads()
        self.index.reload()
        seconds = time.perf_counter() - t
        self.searcher = self.index.searcher()
        return seconds

    def prepare(self, queries, k, depth):
        super().prepare(queries, k, depth)
        self.q = [self.index.parse_query_lenient(sanitize(t), ["text"])[0] for t in queries.texts]

    def search(self, mode, i):
        s = self.searcher
        return np.array([s.doc(a)["chunk_id"][0] for _score, a in s.search(self.q[i], self.k).hits], np.int64)


# ---------------------------------------------------------------------------------------------- bm25s


class BM25sPeer(Peer):
    name = "bm25s"
    modes = ("bm25",)

    def build(self, corpus, folder):
        import bm25s

        try:
            import Stemmer

            self.stemmer = Stemmer.Stemmer("english")
        except ImportError:
            self.stemmer = None
        self.notes = (f"bm25s {bm25s.__version__}, numpy backend, k1=1.2 b=0.75 (lucene), English stopwords, "
                      + ("PyStemmer english" if self.stemmer else "no stemmer (PyStemmer not installed)"))
        self.folder = Path(folder)
        t = time.perf_counter()
        self.model = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        tokens = bm25s.tokenize(corpus.texts, stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.model.index(tokens, show_progress=False)
        seconds = time.perf_counter() - t
        self.model.save(str(self.folder), show_progress=False)
        self.ids = corpus.ids
        return seconds

    def prepare(self, queries, k, depth):
        super().prepare(queries, k, depth)
        self.q = list(queries.texts)

    def search(self, mode, i):
        import bm25s

        tokens = bm25s.tokenize([self.q[i]], stopwords="en", stemmer=self.stemmer, show_progress=False,
                                return_ids=False)
        if not tokens[0]:
            return np.empty(0, np.int64)
        docs, _scores = self.model.retrieve(tokens, k=self.k, show_progress=False, n_threads=1)
        return self.ids[docs[0]]


# ---------------------------------------------------------------------------------------------- qdrant


class QdrantPeer(Peer):
    """qdrant-edge: one EdgeShard holding named vectors dense (HNSW), colbert (multivector, MaxSim, no
    HNSW: it only re-ranks) and sparse, built with upserts of 500 points then `optimize()`. Each point
    carries its chunk's text as payload; every mode runs twice: ids and scores only (Qdrant's bare engine),
    and "+ text" (`with_payload`), which returns the text with each hit as hsearch's hits do."""

    name = "qdrant-edge"

    def __init__(self, threads: int, colbert: bool = True):
        self.threads, self.with_colbert = threads, colbert
        bare = ("dense", "sparse", "dense+sparse", "dense+sparse (dbsf)") + (("colbert", "all") if colbert else ())
        self.modes = bare + tuple(f"{m} + text" for m in bare)

    def build(self, corpus, folder):
        import qdrant_edge as q

        self.q = q
        self.folder = Path(folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        vectors = {"dense": q.EdgeVectorParams(
            size=corpus.dense.shape[1], distance=q.Distance.Dot,
            hnsw_config=q.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCTION, full_scan_threshold=10_000,
                                          max_indexing_threads=self.threads))}
        if self.with_colbert:
            vectors["colbert"] = q.EdgeVectorParams(
                size=corpus.cb_flat.shape[1], distance=q.Distance.Dot,
                multivector_config=q.MultiVectorConfig(q.MultiVectorComparator.MaxSim),
                hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000,
                                              max_indexing_threads=self.threads))
        config = q.EdgeConfig(vectors=vectors, sparse_vectors={"sparse": q.EdgeSparseVectorParams()},
                              max_search_threads=self.threads)
        self.notes = (f"qdrant-edge-py {_version('qdrant-edge-py')}: dense HNSW m={HNSW_M} ef_construct="
                      f"{HNSW_EF_CONSTRUCTION} hnsw_ef={HNSW_EF_SEARCH}, sparse (dot), "
                      + ("multivector float32 MaxSim (no HNSW), " if self.with_colbert else "")
                      + f"max_search_threads={self.threads}")
        t = time.perf_counter()
        self.shard = q.EdgeShard.create(str(self.folder), config)
        batch = []
        for i in range(len(corpus)):
            terms, weights = corpus.sparse_row(i)
            vec = {"dense": corpus.dense[i].tolist(), "sparse": q.SparseVector(terms.tolist(), weights.tolist())}
            if self.with_colbert:
                vec["colbert"] = corpus.colbert_row(i).tolist()
            batch.append(q.Point(int(corpus.ids[i]), vec, {"text": corpus.texts[i]}))
            if len(batch) == 500:
                self.shard.update(q.UpdateOperation.upsert_points(batch))
                batch = []
        if batch:
            self.shard.update(q.UpdateOperation.upsert_points(batch))
        self.upsert_seconds = time.perf_counter() - t
        self.shard.optimize()
        self.shard.flush()
        seconds = time.perf_counter() - t
        info = self.shard.info()
        self.notes += f"; {info.segments_count} segment(s), {info.indexed_vectors_count} indexed vectors"
        return seconds

    def prepare(self, queries, k, depth):
        super().prepare(queries, k, depth)
        q = self.q
        self.qd = [q.Query.Nearest(v.tolist(), using="dense") for v in queries.dense]
        self.qs = [q.Query.Nearest(q.SparseVector(*_sorted_sparse(s)), using="sparse") for s in queries.sparse]
        self.qc = [q.Query.Nearest(c.tolist(), using="colbert") for c in queries.colbert] if self.with_colbert else []
        self.params = q.SearchParams(hnsw_ef=HNSW_EF_SEARCH)

    def search(self, mode, i):
        q = self.q
        text = mode.endswith(" + text")
        mode = mode.removesuffix(" + text")
        if mode == "dense":
            req = q.QueryRequest(limit=self.k, with_payload=text, query=self.qd[i], params=self.params)
        elif mode == "sparse":
            req = q.QueryRequest(limit=self.k, with_payload=text, query=self.qs[i])
        elif mode == "colbert":  # as hsearch's colbert mode: the dense top-200 re-ranked by MaxSim
            req = q.QueryRequest(limit=self.k, with_payload=text, query=self.qc[i], prefetches=[
                q.Prefetch(limit=max(200, self.depth), query=self.qd[i], params=self.params)])
        else:
            pre = [q.Prefetch(limit=self.depth, query=self.qd[i], params=self.params),
                   q.Prefetch(limit=self.depth, query=self.qs[i])]
            final = {"dense+sparse": q.Fusion.Rrf(k=RRF_K), "dense+sparse (dbsf)": q.Fusion.Dbsf(),
                     "all": self.qc[i] if self.qc else None}[mode]
            req = q.QueryRequest(limit=self.k, with_payload=text, query=final, prefetches=pre)
        hits = self.shard.query(req)
        if text and hits and not hits[0].payload.get("text"):
            raise RuntimeError("qdrant-edge returned no payload text")
        return np.array([p.id for p in hits], np.int64)

    def close(self):
        self.shard.close()


def _sorted_sparse(s: dict):
    t = sorted(s)
    return t, [float(s[x]) for x in t]


# ---------------------------------------------------------------------------------------------- milvus


class MilvusPeer(Peer):
    """Milvus Lite through pymilvus' MilvusClient (a local .db, served in-process over gRPC)."""

    name = "milvus-lite"
    modes = ("dense", "sparse", "dense+sparse", "dense+sparse (weighted)")

    def build(self, corpus, folder):
        from pymilvus import DataType, MilvusClient

        self.folder = Path(folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.notes = (f"pymilvus {_version('pymilvus')}, milvus-lite {_version('milvus-lite')}: dense HNSW "
                      f"M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} ef={HNSW_EF_SEARCH} (IP), "
                      "SPARSE_INVERTED_INDEX (IP); RRFRanker(60) / WeightedRanker(0.4, 0.2)")
        t = time.perf_counter()
        self.client = c = MilvusClient(str(self.folder / "milvus.db"))
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=int(corpus.dense.shape[1]))
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        ip = c.prepare_index_params()
        ip.add_index("dense", index_type="HNSW", metric_type="IP",
                     params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        c.create_collection("bench", schema=schema, index_params=ip)
        rows = []
        for i in range(len(corpus)):
            terms, weights = corpus.sparse_row(i)
            rows.append({"id": int(corpus.ids[i]), "dense": corpus.dense[i],
                         "sparse": dict(zip(terms.tolist(), weights.tolist()))})
            if len(rows) == 1000:
                c.insert("bench", rows)
                rows = []
        if rows:
            c.insert("bench", rows)
        c.flush("bench")
        # Milvus Lite 3.2 searches rows flushed in this session by brute force (the HNSW file is built
        # but not attached) until the collection is released and loaded again: do that, and check it.
        c.release_collection("bench")
        c.load_collection("bench")
        seconds = time.perf_counter() - t
        self.notes += f"; searches served by HNSW: {self._uses_hnsw(corpus)}"
        return seconds

    def _uses_hnsw(self, corpus) -> str:
        try:  # the server runs in this process: count calls into its HNSW wrapper during one search
            import milvus_lite.index.faiss_hnsw as H
        except ImportError:
            return "unknown"
        calls, orig = [], H.FaissHnswIndex.search
        H.FaissHnswIndex.search = lambda *a, **k: calls.append(1) or orig(*a, **k)
        try:
            self.client.search("bench", [corpus.dense[0]], limit=10, anns_field="dense",
                               search_params={"metric_type": "IP", "params": {"ef": HNSW_EF_SEARCH}},
                               output_fields=["id"])
        finally:
            H.FaissHnswIndex.search = orig
        return "yes" if calls else "no (brute force)"

    def prepare(self, queries, k, depth):
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        super().prepare(queries, k, depth)
        self.qd = [v for v in np.asarray(queries.dense, np.float32)]
        self.qs = [{int(t): float(w) for t, w in s.items()} for s in queries.sparse]
        self.dparams = {"metric_type": "IP", "params": {"ef": HNSW_EF_SEARCH}}
        self.sparams = {"metric_type": "IP"}
        self.Ann, self.rankers = AnnSearchRequest, {"dense+sparse": RRFRanker(RRF_K),
                                                    "dense+sparse (weighted)": WeightedRanker(*WEIGHTS)}

    def search(self, mode, i):
        c = self.client
        if mode == "dense":
            res = c.search("bench", [self.qd[i]], limit=self.k, anns_field="dense", search_params=self.dparams,
                           output_fields=["id"])
        elif mode == "sparse":
            res = c.search("bench", [self.qs[i]], limit=self.k, anns_field="sparse", search_params=self.sparams,
                           output_fields=["id"])
        else:
            reqs = [self.Ann([self.qd[i]], "dense", self.dparams, limit=self.depth),
                    self.Ann([self.qs[i]], "sparse", self.sparams, limit=self.depth)]
            res = c.hybrid_search("bench", reqs, self.rankers[mode], limit=self.k, output_fields=["id"])
        return np.array([h["id"] for h in res[0]], np.int64)

    def close(self):
        self.client.close()


# ------------------------------------------------------------------------------------------------ all


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def available(names) -> tuple[list[str], list[str]]:
    """(peers whose packages import, 'name: reason' for those skipped)."""
    need = {"faiss-flat": "faiss", "faiss-hnsw": "faiss", "tantivy": "tantivy", "bm25s": "bm25s",
            "qdrant-edge": "qdrant_edge", "milvus-lite": "pymilvus"}
    ok, skipped = [], []
    for n in names:
        if n not in need:
            raise SystemExit(f"unknown peer {n!r}; choose from {', '.join(need)}")
        try:
            __import__(need[n])
            if n == "milvus-lite":
                __import__("milvus_lite")
            ok.append(n)
        except ImportError as e:
            skipped.append(f"{n}: not installed ({e.name}); pip install 'hsearch[bench]'")
    return ok, skipped


def make_peer(name: str, threads: int, colbert: bool) -> Peer:
    if name.startswith("faiss-"):
        return FaissPeer(name.split("-", 1)[1])
    return {"tantivy": TantivyPeer, "bm25s": BM25sPeer, "milvus-lite": MilvusPeer}[name]() \
        if name != "qdrant-edge" else QdrantPeer(threads, colbert=colbert)
