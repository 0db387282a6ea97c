"""hsearch against peers on the same data in the same run: index time, size on disk per store, query latency.

    python benchmarks/bench_engine.py --synthetic 100000 --out benchmarks/out             # synthetic, 100k chunks
    python benchmarks/bench_engine.py --collection benchmarks/out/scifact-e5-f32 \\
        --dataset ../shared/datasets/scifact --out benchmarks/out                         # an existing collection
    python benchmarks/bench_engine.py --quick --out /tmp/bench                            # smoke run, < 1 minute

Synthetic: a REAL hsearch collection (writer, segments, docs.sqlite, tantivy) built from Zipf-distributed
made-up words with `SyntheticEncoder`, a stand-in for the transformer with the encoder interface
(hashed words -> dense / sparse / per-token vectors), plugged in with `open_collection(encoder=...)`.
Queries: 3 of a random chunk's rarest words + 2 words drawn from the Zipf distribution.

Existing collection (--collection): the stored vectors are read back (FAISS reconstruct, the sparse
forward index, the decoded token store, chunk texts from docs.sqlite), so every peer indexes exactly
what hsearch holds. hsearch's own index time excluding encoding is measured by rebuilding the same
chunks into a scratch collection with `ReplayEncoder`, which hands back the stored vectors. Queries:
the dataset's test queries, encoded once with the collection's own model; latency including encoding
runs `Collection.search` with that model.

Latency: one warm-up pass over all queries, then --repeats timed passes (GC off while timing); p50 and
p95 over queries per pass, the median over passes is reported. Same k and candidate depth everywhere
(k=10; each first stage retrieves top --depth=100; colbert alone re-ranks the dense top-200). faiss,
torch, BLAS and qdrant search threads are all set to --threads. hsearch rows time `Collection.run`:
planner, first stages, union re-scored by every signal, fusion, grouping by document and snippet
lookup in SQLite; "hsearch store call" rows time the bare store search for comparison.
"""
from __future__ import annotations

import os
import sys


def _threads_from_argv(argv) -> str:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# Thread counts of the BLAS / OpenMP runtimes are read when they load: set them before numpy does.
_THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from engine_peers import Corpus, QuerySet, available, disk_usage, make_peer  # noqa: E402

from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.encode.base import EncoderSpec  # noqa: E402
from hsearch.index.kernels import ranges  # noqa: E402
from hsearch.types import Encoded  # noqa: E402

ALL_PEERS = ("faiss-flat", "faiss-hnsw", "tantivy", "bm25s", "qdrant-edge", "milvus-lite")
# (label, mode, plan options): every hsearch configuration that is timed. The default plan retrieves
# top-depth (100) per first stage even for one signal and re-scores it; "(depth 10)" asks for the top-10
# only: the same work as a peer's top-10 search.
HSEARCH_MODES = [
    ("dense", "dense", {}), ("dense (depth 10)", "dense", {"depth": 10}),
    ("sparse", "sparse", {}), ("sparse (depth 10)", "sparse", {"depth": 10}),
    ("bm25", "bm25", {}), ("bm25 (depth 10)", "bm25", {"depth": 10}),
    ("colbert", "colbert", {}),
    ("dense+sparse", "dense+sparse", {}), ("dense+sparse (rrf)", "dense+sparse", {"fusion": "rrf"}),
    ("dense+bm25", "dense+bm25", {}), ("dense+sparse+bm25", "dense+sparse+bm25", {}), ("all", "all", {}),
    ("all+bm25", "all+bm25", {}),
]
# the hsearch rows each peer mode is compared with (ratio table); the first is the overlap reference
COMPARE = {"dense": ["dense (depth 10)", "dense"], "sparse": ["sparse (depth 10)", "sparse"],
           "bm25": ["bm25 (depth 10)", "bm25"], "colbert": ["colbert"],
           "dense+sparse": ["dense+sparse (rrf)", "dense+sparse"], "dense+sparse (dbsf)": ["dense+sparse"],
           "dense+sparse (weighted)": ["dense+sparse"], "all": ["all"]}


# ------------------------------------------------------------------------------ synthetic encoder


class WordTokenizer:
    """Lower-cased \\w+ words as tokens, token id = crc32(word) & 0x7FFFFFFF; called like a Hugging Face
    tokenizer (the writer chunks with it)."""

    _word = re.compile(r"\w+")

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False, **_):
        if isinstance(text, (list, tuple)):
            outs = [self(t, return_offsets_mapping=return_offsets_mapping) for t in text]
            return {k: [o[k] for o in outs] for k in outs[0]} if outs else {"input_ids": []}
        words = list(self._word.finditer(text.lower()))
        out = {"input_ids": [zlib.crc32(m.group().encode()) & 0x7FFFFFFF for m in words]}
        if return_offsets_mapping:
            out["offset_mapping"] = [m.span() for m in words]
        return out

    def ids(self, text: str) -> np.ndarray:
        words = self._word.findall(text.lower())
        return np.fromiter((zlib.crc32(w.encode()) & 0x7FFFFFFF for w in words), np.int64, len(words))

    def num_special_tokens_to_add(self) -> int:
        return 0


class SyntheticEncoder:
    """A deterministic stand-in for the transformer, with the interface the writer and the planner use.

    Per text (words as tokens, see WordTokenizer; tf = count of a word, g(w) in [0.25, 1] a made-up
    idf from the word's hash, b(w) = token id mod 2**16 a bucket):
      dense   (dim)                  normalize(sum_w (1 + ln tf) g(w) R[b(w)] + noise). R = U V: each word a
                                     random point of a `rank`-dimensional subspace (rank 48 of 384), so
                                     the vectors have the low intrinsic dimension of sentence embeddings
                                     (full-rank random word vectors are near-uniform: HNSW recall@10 with
                                     M=32, ef=128 was 0.72 at 30k chunks, 0.96 at rank 64, 0.998 at rank
                                     32); noise: 0.1 of the vector's norm, isotropic, seeded by the text
      sparse  {token id: weight}     (0.1 + 0.3 g(w)) (1 + ln tf): BGE-M3's weight range
      colbert (<= colbert_tokens, colbert_dim)   one vector per word of the first colbert_tokens words:
                                     normalize(C[b(w)] + 0.3 noise), C a fixed Gaussian table
    Texts sharing words get nearby vectors, so a query made of a chunk's words finds it.
    """

    BUCKETS = 1 << 16

    def __init__(self, dim: int = 384, colbert_dim: int = 128, colbert_tokens: int = 48, rank: int = 48,
                 seed: int = 0):
        self.dim, self.colbert_dim, self.colbert_tokens, self.seed = dim, colbert_dim, colbert_tokens, seed
        rng = np.random.default_rng(seed)
        rank = min(rank, dim)
        U = rng.standard_normal((self.BUCKETS, rank), dtype=np.float32) / np.float32(np.sqrt(rank))
        V = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)  # orthonormal rows
        self.R = U @ V
        self.C = rng.standard_normal((self.BUCKETS, colbert_dim), dtype=np.float32) / np.float32(np.sqrt(colbert_dim))
        self.tokenizer = WordTokenizer()
        fp = hashlib.sha256(f"synthetic-v2:{dim}:{colbert_dim}:{colbert_tokens}:{rank}:{seed}".encode()).hexdigest()[:16]
        self.spec = EncoderSpec(name=f"synthetic-{dim}d-colbert{colbert_dim}x{colbert_tokens}", pooling="mean",
                                max_length=512, fingerprint=fp,
                                extra={"source": "benchmarks/bench_engine.py SyntheticEncoder (hashed words)"})
        self.seconds = 0.0  # time spent encoding (reported apart from the stores)

    @staticmethod
    def _g(ids: np.ndarray) -> np.ndarray:
        return 0.25 + 0.75 * (((ids * 2654435761) >> 11) & 0xFFFF).astype(np.float32) / 65535.0

    def encode_documents(self, texts, colbert: bool = True, progress: bool = False, **_):
        return self.encode(texts, colbert=colbert)

    def encode_queries(self, texts, dense: bool = True, sparse: bool = True, colbert: bool = True, **_):
        return self.encode(texts, dense=dense, sparse=sparse, colbert=colbert)

    def encode(self, texts, dense=True, sparse=True, colbert=True, block: int = 2048) -> list[Encoded]:
        t0 = time.perf_counter()
        out = []
        for s in range(0, len(texts), block):
            out += self._block(list(texts[s:s + block]), dense, sparse, colbert)
        self.seconds += time.perf_counter() - t0
        return out

    def _block(self, texts, want_dense, want_sparse, want_colbert):
        out = []
        for text in texts:
            ids = self.tokenizer.ids(text)
            u, c = np.unique(ids, return_counts=True)
            g = self._g(u)
            tf = (1.0 + np.log(c)).astype(np.float32)
            rng = np.random.default_rng(zlib.crc32(text.encode()) ^ self.seed)
            enc = Encoded(n_tokens=len(ids))
            if want_dense:
                v = (tf * g) @ self.R[u % self.BUCKETS] if len(u) else np.zeros(self.dim, np.float32)
                noise = rng.standard_normal(self.dim, dtype=np.float32)
                v = v + 0.1 * (np.linalg.norm(v) or 1.0) / np.linalg.norm(noise) * noise
                enc.dense = (v / np.linalg.norm(v)).astype(np.float32)
            if want_sparse:
                enc.sparse = dict(zip(u.tolist(), ((0.1 + 0.3 * g) * tf).tolist()))
            if want_colbert:
                first = ids[:self.colbert_tokens] if len(ids) else np.zeros(1, np.int64)
                m = self.C[first % self.BUCKETS]
                m += np.float32(0.3 / np.sqrt(self.colbert_dim)) * rng.standard_normal(m.shape, dtype=np.float32)
                m /= np.linalg.norm(m, axis=1, keepdims=True)
                enc.colbert = m
            out.append(enc)
        return out


class ReplayEncoder:
    """Hands back the stored vectors of an existing collection's chunks (looked up by chunk text), so
    hsearch's write path is timed on the real vectors without running the model again."""

    def __init__(self, corpus: Corpus, source_encoder: dict):
        self.corpus, self.tokenizer = corpus, WordTokenizer()
        self.row = {}
        for i, t in enumerate(corpus.texts):
            self.row.setdefault(t, i)
        self.dim = int(source_encoder["dim"])
        self.colbert_dim = int(source_encoder["colbert_dim"])
        self.spec = EncoderSpec(name=f"replay-of-{source_encoder.get('name')}", pooling="mean", max_length=10**9,
                                fingerprint="replay-" + str(source_encoder.get("fingerprint")))
        self.seconds = 0.0

    def encode_documents(self, texts, colbert: bool = True, **_):
        t0 = time.perf_counter()
        c, out = self.corpus, []
        for t in texts:
            i = self.row[t]
            terms, weights = c.sparse_row(i)
            out.append(Encoded(dense=c.dense[i], sparse=dict(zip(terms.tolist(), weights.tolist())),
                               colbert=c.colbert_row(i) if colbert and c.cb_flat is not None else None))
        self.seconds += time.perf_counter() - t0
        return out

    def encode_queries(self, texts, **_):
        raise NotImplementedError("ReplayEncoder only replays documents")


# ------------------------------------------------------------------------------ synthetic corpus


SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70: pronounceable made-up words


def make_vocab(size: int) -> np.ndarray:
    """`size` distinct made-up words of 2-4 syllables (rank r -> the base-70 digits of r + 70)."""
    n = len(SYLLABLES)
    words = []
    for r in range(size):
        x, parts = r + n, []
        while x:
            x, d = divmod(x, n)
            parts.append(SYLLABLES[d])
        words.append("".join(reversed(parts)))
    return np.array(words, dtype=object)


def make_corpus(n: int, seed: int = 0, vocab_size: int = 50_000, zipf: float = 1.0, words=(40, 120),
                topics: int = 200, topical: float = 0.5):
    """n texts of words[0]..words[1] words. Each text has one of `topics` topics; a word is drawn with
    probability 1 - topical from the global Zipf distribution (rank r ~ 1/(r+1)^zipf: function words)
    and otherwise from its topic's own Zipf distribution over a topic-specific ordering of the
    vocabulary (jargon shared by the texts of a topic). Returns texts, vocab, word ids, offsets, counts."""
    rng = np.random.default_rng(seed)
    vocab = make_vocab(vocab_size)
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1) ** zipf)
    cdf /= cdf[-1]
    lengths = rng.integers(words[0], words[1] + 1, n)
    total = int(lengths.sum())
    word = np.minimum(np.searchsorted(cdf, rng.random(total)), vocab_size - 1).astype(np.int64)
    topic_of = np.repeat(rng.integers(0, topics, n), lengths)
    pick = np.flatnonzero(rng.random(total) < topical)
    orders = np.stack([rng.permutation(vocab_size).astype(np.int32) for _ in range(topics)])
    ranks = np.minimum(np.searchsorted(cdf, rng.random(len(pick))), vocab_size - 1)
    word[pick] = orders[topic_of[pick], ranks]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(vocab[word[offsets[i]:offsets[i + 1]]]) for i in range(n)]
    return texts, vocab, word, offsets, np.bincount(word, minlength=vocab_size)


def make_queries(nq: int, vocab, word, offsets, counts, seed: int = 1, zipf: float = 1.0) -> list[str]:
    """A random chunk's 3 rarest words (by corpus frequency) plus 2 words of the global Zipf distribution."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1) ** zipf)
    cdf /= cdf[-1]
    out = []
    for j in rng.integers(0, len(offsets) - 1, nq):
        w = np.unique(word[offsets[j]:offsets[j + 1]])
        rare = w[np.argsort(counts[w], kind="stable")[:3]]
        extra = np.minimum(np.searchsorted(cdf, rng.random(2)), len(vocab) - 1)
        words = list(vocab[np.concatenate([rare, extra])])
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


# ------------------------------------------------------------------------------ hsearch side


class PhaseTimer:
    """Times the writer's store calls by wrapping the functions where the write path looks them up
    (hsearch.writer, and hsearch.backends.local where that module exists); benchmark-side only."""

    PHASES = [("dense", "write_dense"), ("sparse", "write_sparse"), ("colbert", "write_multivector"),
              ("fsync", "fsync_tree")]

    def __init__(self):
        import importlib

        from hsearch.index.bm25 import BM25Index
        from hsearch.storage.docstore import DocStore

        self.seconds = defaultdict(float)
        self._undo = []
        owners = []
        for name in ("hsearch.writer", "hsearch.backends.local"):
            try:
                owners.append(importlib.import_module(name))
            except ImportError:
                pass
        targets = [(phase, m, attr) for phase, attr in self.PHASES for m in owners if hasattr(m, attr)]
        targets += [("bm25", BM25Index, "add"), ("bm25", BM25Index, "commit"), ("docs sqlite", DocStore, "insert")]
        self.missing = [phase for phase, attr in self.PHASES if not any(t[0] == phase for t in targets)]
        for phase, owner, attr in targets:
            fn = getattr(owner, attr)
            self._undo.append((owner, attr, fn))
            setattr(owner, attr, self._wrap(phase, fn))

    def _wrap(self, name, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return timed

    def close(self):
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)


def build_hsearch(folder: Path, docs: list[dict], encoder, config: CollectionConfig) -> dict:
    """Build a collection through the engine; returns {phase: seconds} with 'total' and 'encode'."""
    from hsearch.engine import open_collection

    shutil.rmtree(folder, ignore_errors=True)
    timer = PhaseTimer()
    try:
        t = time.perf_counter()
        col = open_collection(folder, create=True, config=config, encoder=encoder)
        col.add(docs)
        total = time.perf_counter() - t
    finally:
        timer.close()
    phases = dict(timer.seconds)
    for missing in timer.missing:
        phases[missing] = None  # the write path no longer calls it where we look: not timed
    phases["encode"] = encoder.seconds
    phases["total"] = total
    phases["other"] = total - sum(v for k, v in phases.items() if k != "total" and v is not None)
    return phases


def store_sizes(folder: Path) -> dict:
    seg = folder / "segments"
    sizes = {s: sum(disk_usage(p / s) for p in seg.iterdir()) for s in ("dense", "sparse", "colbert")}
    sizes["bm25"] = disk_usage(folder / "bm25")
    sizes["docs sqlite"] = sum(disk_usage(p) for p in folder.glob("docs.sqlite*"))
    sizes["total"] = disk_usage(folder)
    sizes["other"] = sizes["total"] - sum(v for k, v in sizes.items() if k != "total")
    return sizes


def read_back(col) -> tuple[Corpus, dict]:
    """Every live chunk's stored vectors and text, aligned by chunk id, and {chunk id: doc id}."""
    snap = col.snapshot()
    parts = defaultdict(list)
    for seg in snap.segments:
        d = seg.stores["dense"]
        ids = np.asarray(d.ids, np.int64)
        assert np.all(np.diff(ids) > 0), "dense ids ascend within a segment"
        live = snap.live(ids)
        parts["ids"].append(ids[live])
        vecs = d.index.reconstruct_n(0, d.index.ntotal) if d.index is not None else np.zeros((0, 0), np.float32)
        parts["dense"].append(vecs[live])
        s = seg.stores["sparse"]
        assert np.array_equal(np.asarray(s.ids), ids)
        ptr = np.asarray(s.doc_ptr)
        rows = np.flatnonzero(live)
        lens = ptr[rows + 1] - ptr[rows]
        span = ranges(ptr[rows], ptr[rows + 1])
        parts["sp_len"].append(lens)
        parts["sp_terms"].append(np.asarray(s.doc_terms)[span].astype(np.int64))
        parts["sp_weights"].append((np.asarray(s.doc_weights)[span].astype(np.float64) / s.scale).astype(np.float32))
        mv = seg.stores.get("colbert")
        if mv is not None:
            assert np.array_equal(np.asarray(mv.ids), ids)
            off = np.asarray(mv.offsets)
            lens = off[rows + 1] - off[rows]
            toks = []
            for a in range(0, len(rows), 4096):  # decode in blocks
                sub = rows[a:a + 4096]
                tok = ranges(off[sub], off[sub + 1])
                toks.append(mv.codec.decode({k: np.asarray(v[tok]) for k, v in mv.codes.items()}).astype(np.float32))
            parts["cb_len"].append(lens)
            parts["cb_flat"].append(np.concatenate(toks) if toks else np.zeros((0, mv.dim), np.float32))
    ids = np.concatenate(parts["ids"])
    sp_ptr = np.concatenate([[0], np.cumsum(np.concatenate(parts["sp_len"]))]).astype(np.int64)
    cb_off = cb_flat = None
    if parts["cb_flat"]:
        cb_off = np.concatenate([[0], np.cumsum(np.concatenate(parts["cb_len"]))]).astype(np.int64)
        cb_flat = np.concatenate(parts["cb_flat"])
    rows = snap.docs.db.execute("select c.chunk_id, c.text, d.doc_id from chunks c join docs d on d.row = c.doc_row")
    text_of, doc_of = {}, {}
    for cid, text, doc_id in rows:
        text_of[cid], doc_of[cid] = text, doc_id
    corpus = Corpus(ids=ids, texts=[text_of[int(i)] for i in ids], dense=np.concatenate(parts["dense"]),
                    sp_ptr=sp_ptr, sp_terms=np.concatenate(parts["sp_terms"]),
                    sp_weights=np.concatenate(parts["sp_weights"]), cb_offsets=cb_off, cb_flat=cb_flat)
    return corpus, doc_of


# ------------------------------------------------------------------------------ timing


def time_queries(fn, nq: int, repeats: int):
    """Warm-up pass (its results are returned), then `repeats` timed passes over all queries.
    Returns (median p50 ms, median p95 ms, results of the warm-up pass)."""
    results = [fn(i) for i in range(nq)]
    p50, p95 = [], []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            ts = np.empty(nq)
            for i in range(nq):
                t = time.perf_counter()
                fn(i)
                ts[i] = time.perf_counter() - t
        finally:
            gc.enable()
        p50.append(np.percentile(ts, 50) * 1e3)
        p95.append(np.percentile(ts, 95) * 1e3)
    return statistics.median(p50), statistics.median(p95), results


def docs_of(chunk_ids, doc_of: dict, k: int) -> list:
    """Chunk ids -> doc ids, first occurrence kept (hsearch returns each document once)."""
    out, seen = [], set()
    for c in chunk_ids:
        d = doc_of.get(int(c))
        if d is not None and d not in seen:
            seen.add(d)
            out.append(d)
    return out[:k]


def overlap(a: list, b: list, k: int) -> float:
    """Mean |top-k(a_i) & top-k(b_i)| / |top-k(b_i)| over queries (b: the reference)."""
    vals = [len(set(x[:k]) & set(y[:k])) / len(y[:k]) for x, y in zip(a, b) if len(y)]
    return float(np.mean(vals)) if vals else float("nan")


# ------------------------------------------------------------------------------ one benchmark


class Bench:
    def __init__(self, args, name: str):
        self.args, self.name = args, name
        self.load_start = os.getloadavg()
        self.versions = versions()  # the code as it was when the run started
        self.index_rows = []  # (system, part, seconds | None, bytes | None, note)
        self.latency = []  # dict(system, mode, p50, p95, overlap, ref)
        self.recall = []  # (system, params, recall@10)
        self.extra = []  # markdown sections
        self.notes = []
        self.results = {}  # (system, mode) -> list of doc-id lists
        self.dense_chunks = {}  # system -> top-k chunk ids of a bare dense search, per query (for recall)

    def log(self, msg):
        print(f"[{time.strftime('%H:%M:%S')}] {self.name}: {msg}", file=sys.stderr, flush=True)

    def run(self, col, corpus: Corpus, doc_of: dict, qs: QuerySet, encs: list, work: Path):
        a = self.args
        k, nq = a.k, len(qs.texts)
        from hsearch.query.execute import rescore, retrieve
        from hsearch.query.plan import parse_mode

        snap = col.snapshot()
        # ---- hsearch through the engine (excluding query encoding)
        for label, mode, opts in HSEARCH_MODES:
            if ("colbert" in parse_mode(mode) and corpus.cb_flat is None) or ("bm25" in parse_mode(mode)
                                                                            and snap.bm25 is None):
                continue
            self.log(f"hsearch {label}")
            o = {"depth": a.depth, **opts}
            fn = lambda i, m=mode, o=o: col.run(col.plan(qs.texts[i], m, k=k, **o), encoded=encs[i])
            p50, p95, res = time_queries(fn, nq, a.repeats)
            self.results[("hsearch", label)] = [[h.id for h in hits] for hits in res]
            self.latency.append(dict(system="hsearch", mode=label, p50=p50, p95=p95))
        # ---- bare store calls (no planner, no fusion, no SQLite)
        allow = snap.live
        calls = [("dense", lambda i: retrieve(snap, "dense", encs[i].dense, k, allow)),
                 ("sparse", lambda i: retrieve(snap, "sparse", encs[i].sparse, k, allow)),
                 ("bm25", lambda i: retrieve(snap, "bm25", qs.texts[i], k, allow))]
        if corpus.cb_flat is not None:
            cands = [retrieve(snap, "dense", e.dense, 200, allow)[0] for e in encs]
            calls.append(("colbert re-score of the dense top-200",
                          lambda i: rescore(snap, "colbert", encs[i].colbert, cands[i])))
        for label, fn in calls:
            self.log(f"hsearch store call {label}")
            p50, p95, res = time_queries(fn, nq, a.repeats)
            self.latency.append(dict(system="hsearch store call", mode=label, p50=p50, p95=p95))
            if label in ("dense", "sparse", "bm25"):
                self.results[("hsearch store call", label)] = [docs_of(r[0], doc_of, k) for r in res]
            if label == "dense":
                self.dense_chunks["hsearch"] = [r[0] for r in res]

        # ---- peers
        wanted = [p.strip() for p in a.peers.split(",") if p.strip()] if a.peers != "all" else list(ALL_PEERS)
        wanted = [] if a.peers == "none" else wanted
        names, skipped = available(wanted)
        self.notes += [f"peer skipped: {s}" for s in skipped]
        for pname in names:
            peer = make_peer(pname, a.threads, colbert=corpus.cb_flat is not None and not a.no_qdrant_colbert)
            self.log(f"{pname}: build")
            try:
                seconds = peer.build(corpus, work / pname)
                size = peer.size()
                self.index_rows.append((pname, "everything it holds", seconds, size, peer.notes))
                peer.prepare(qs, k, a.depth)
                for mode in peer.modes:
                    self.log(f"{pname} {mode}")
                    p50, p95, res = time_queries(lambda i, m=mode: peer.search(m, i), nq, a.repeats)
                    self.results[(pname, mode)] = [docs_of(r, doc_of, k) for r in res]
                    if mode == "dense":
                        self.dense_chunks[pname] = res
                    self.latency.append(dict(system=pname, mode=mode, p50=p50, p95=p95))
            except Exception as e:  # noqa: BLE001 - a peer failing is reported, the run goes on
                self.notes.append(f"{pname} failed: {type(e).__name__}: {e}")
                self.log(f"{pname} FAILED: {e!r}")
            finally:
                try:
                    peer.close()
                except Exception:  # noqa: BLE001
                    pass
                shutil.rmtree(work / pname, ignore_errors=True)
        self._overlaps(col, corpus, doc_of, encs, k)

    def _overlaps(self, col, corpus, doc_of, encs, k):
        """Agreement of each row's top-k with a reference: exact flat search for dense (so: recall@10),
        tantivy alone for bm25, and otherwise hsearch's row for the same mode."""
        R = self.results
        if ("faiss-flat", "dense") in R:
            exact = R[("faiss-flat", "dense")]
        else:  # exact dense by brute force on the read-back vectors
            exact = [docs_of(corpus.ids[np.argsort(-(corpus.dense @ e.dense))[:k]], doc_of, k) for e in encs]

        def reference(system, mode):
            if mode == "dense":
                return None if system == "faiss-flat" else ("exact (flat)", exact)
            if mode == "bm25":
                if system != "tantivy" and ("tantivy", "bm25") in R:
                    return "tantivy alone", R[("tantivy", "bm25")]
                return None if system == "hsearch" else ("hsearch bm25", R.get(("hsearch", "bm25")))
            if system == "hsearch":
                return None  # hsearch's rows are the references of the other modes
            key = mode if system == "hsearch store call" else COMPARE.get(mode, [mode])[0]
            return f"hsearch {key}", R.get(("hsearch", key))

        for row in self.latency:
            got = R.get((row["system"], row["mode"]))
            ref = reference(row["system"], row["mode"]) if got is not None else None
            if ref and ref[1] is not None:
                row["overlap"], row["ref"] = overlap(got, ref[1], k), ref[0]
        # recall of the bare top-k chunk searches against exact search, chunk by chunk
        truth = self.dense_chunks.get("faiss-flat") or [corpus.ids[np.argsort(-(corpus.dense @ e.dense))[:k]]
                                                        for e in encs]
        for system, label in [("hsearch", "hsearch's own FAISS index (store call, "
                               + ("HNSW)" if self._hnsw(col) else "flat)")),
                              ("faiss-hnsw", "faiss HNSW alone"), ("qdrant-edge", "qdrant-edge HNSW"),
                              ("milvus-lite", "milvus-lite HNSW")]:
            if system in self.dense_chunks:
                got = [list(map(int, x)) for x in self.dense_chunks[system]]
                self.recall.append((label, overlap(got, [list(map(int, t)) for t in truth], k)))

    @staticmethod
    def _hnsw(col) -> bool:
        return any(s.stores["dense"].meta["kind"] == "hnsw" for s in col.snapshot().segments)


# ------------------------------------------------------------------------------ report


def fmt_s(x):
    return "" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_mib(b):
    return "" if b is None else f"{b / 2**20:.1f}"


def fmt_ms(x):
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _load(avg) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, CPU {cpu}, RAM {mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("faiss-cpu", "tantivy", "torch", "numpy", "bm25s", "qdrant-edge-py", "pymilvus", "milvus-lite"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        out.insert(0, f"hsearch @ {commit}{' (+ uncommitted changes)' if dirty else ''}")
    except OSError:
        pass
    return ", ".join(out)


def report(b: Bench, title: str, data_lines: list[str]) -> str:
    a = b.args
    L = [f"## {title}", "",
         f"{datetime.datetime.now():%Y-%m-%d %H:%M}; machine: {machine()}; threads={a.threads} "
         "(faiss OpenMP, torch, BLAS, qdrant search/indexing pools; Milvus Lite runs in-process, its faiss "
         "shares the OpenMP setting); nothing else was controlled: the machine is shared, load average "
         f"(1/5/15 min) {_load(b.load_start)} at the start, {_load(os.getloadavg())} at the end.",
         "", "    " + " ".join(shlex.quote(x) for x in [sys.executable.split("/")[-1]] + sys.argv), "",
         f"Versions: {b.versions}.", ""]
    L += data_lines + [""]
    L += ["### Index time and size on disk", "",
          "Sizes are disk usage (allocated blocks, as `du`). hsearch phases are measured inside one build "
          "through the engine (the writer's store calls timed in place).", "",
          "| system | part | index time (s) | size (MiB) | notes |", "|---|---|---:|---:|---|"]
    L += [f"| {s} | {p} | {fmt_s(t)} | {fmt_mib(z)} | {n} |" for s, p, t, z, n in b.index_rows]
    L += ["", f"### Query latency, excluding query encoding (k={a.k}, depth {a.depth}, threads={a.threads})", "",
          f"{b.nq} queries; one warm-up pass, then {a.repeats} timed passes; p50/p95 over queries per pass, "
          "median over passes. overlap@10: mean share of the reference's top-10 documents also in this row's "
          "top-10 (for dense the reference is exact flat search). hsearch returns documents (a document "
          "scores as its best chunk); peers and store calls return chunks, mapped to their documents "
          "(repeats dropped), so where documents have several chunks a peer's list can hold fewer than 10 "
          "documents and the overlap drops below 1 for that reason alone. Fusion differs between engines "
          "(hsearch: weighted sum of all signals re-scored on the union, or RRF over those scores; Qdrant: "
          "RRF or DBSF of the prefetch lists; Milvus: RRF or weighted sum of the two lists), so fused rows "
          "agree only partly by design.", "",
          "| system | mode | p50 (ms) | p95 (ms) | overlap@10 | reference |", "|---|---|---:|---:|---:|---|"]
    for r in b.latency:
        ov = f"{r['overlap']:.3f}" if "overlap" in r else ""
        L.append(f"| {r['system']} | {r['mode']} | {fmt_ms(r['p50'])} | {fmt_ms(r['p95'])} | {ov} | {r.get('ref', '')} |")
    hs = {r["mode"]: r for r in b.latency if r["system"] == "hsearch"}
    ratios = []
    for r in b.latency:
        if r["system"].startswith("hsearch"):
            continue
        for ref in COMPARE.get(r["mode"], [r["mode"]]):
            if ref in hs:
                h = hs[ref]
                ratios.append(f"| {r['system']} {r['mode']} | hsearch {ref} | {fmt_ms(r['p50'])} | "
                              f"{fmt_ms(h['p50'])} | {r['p50'] / h['p50']:.2f}x |")
    if ratios:
        L += ["", "### Ratios (peer p50 / hsearch p50; above 1: hsearch is faster)", "",
              "| peer row | hsearch row | peer p50 (ms) | hsearch p50 (ms) | ratio |", "|---|---|---:|---:|---:|"]
        L += ratios
    if b.recall:
        L += ["", "### HNSW recall@10 against exact (flat) search, same query vectors", "",
              f"Top-{a.k} chunk ids of a bare dense search against those of exact inner-product search "
              "(faiss IndexFlatIP) on the same vectors.", "", "| index | recall@10 |", "|---|---:|"]
        L += [f"| {s} | {r:.3f} |" for s, r in b.recall]
    for section in b.extra:
        L += [""] + section
    if b.notes:
        L += ["", "Notes:"] + [f"- {n}" for n in b.notes]
    return "\n".join(L) + "\n"


def write_report(text: str, out: Path | None, name: str):
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"engine-{name}.md"
        path.write_text(text, encoding="utf-8")
        print(f"written: {path}", file=sys.stderr)


# ------------------------------------------------------------------------------ the two runs


def run_synthetic(args, work: Path):
    from hsearch.engine import open_collection

    n = args.synthetic
    name = args.name or (f"quick-synthetic-{n // 1000}k" if args.quick else f"synthetic-{n // 1000}k")
    b = Bench(args, name)
    b.log(f"generating {n} chunks")
    texts, vocab, word, offsets, counts = make_corpus(n, seed=args.seed)
    queries = make_queries(args.queries, vocab, word, offsets, counts, seed=args.seed + 1)
    enc = SyntheticEncoder(dim=args.dim, colbert_dim=args.colbert_dim, colbert_tokens=args.colbert_tokens,
                           rank=args.dense_rank, seed=args.seed)
    commit_every = -(-n // args.segments)
    config = CollectionConfig(model=enc.spec.name, chunk_tokens=256, chunk_overlap=0, dense_index=args.dense_index,
                              colbert_codec=args.colbert_codec, commit_every=commit_every)
    folder = work / "hsearch"
    b.log("hsearch build")
    phases = build_hsearch(folder, [{"id": f"s{i:07d}", "text": t} for i, t in enumerate(texts)], enc, config)
    sizes = store_sizes(folder)
    col = open_collection(folder, encoder=enc)
    kinds = sorted({s.stores["dense"].meta["kind"] for s in col.snapshot().segments})
    part_notes = {"dense": f"FAISS {'/'.join(kinds)} (HNSW: M=32, efConstruction=200, efSearch=128)",
                  "colbert": f"{args.colbert_codec}, {args.colbert_dim} dims", "bm25": "tantivy en_stem",
                  "sparse": "inverted + forward index, float32", "docs sqlite": "chunk texts, documents, metadata",
                  "encode": "SyntheticEncoder (not a transformer; excluded from the total below)",
                  "other": "chunking, hashing, manifest, segment bookkeeping files",
                  "fsync": "fsync of the segment folder"}
    enc_s = phases.pop("encode")
    total = phases.pop("total")
    for part in ("dense", "sparse", "colbert", "bm25", "docs sqlite", "fsync", "other"):
        b.index_rows.append(("hsearch", part, phases.get(part), sizes.get(part) if part != "fsync" else None,
                             part_notes.get(part, "")))
    b.index_rows.append(("hsearch", "**total, excluding encoding**", total - enc_s, sizes["total"],
                         f"{len(col.snapshot().segments)} segment(s), commit_every={commit_every}"))
    b.index_rows.append(("hsearch", "encode (synthetic)", enc_s, None, part_notes["encode"]))
    b.log("reading the stored vectors back")
    corpus, doc_of = read_back(col)
    encs = enc.encode_queries(queries)
    qs = QuerySet(texts=queries, dense=np.stack([e.dense for e in encs]), sparse=[e.sparse for e in encs],
                  colbert=[e.colbert for e in encs])
    b.nq = len(queries)
    b.run(col, corpus, doc_of, qs, encs, work)
    n_tok = int(corpus.cb_offsets[-1]) if corpus.cb_offsets is not None else 0
    data = [f"Data: synthetic, {n:,} chunks (one per document) of {40}-{120} made-up words drawn with Zipf "
            f"frequencies (s=1.0) from a 50,000-word vocabulary ({sum(len(t) for t in texts) / n:.0f} characters "
            f"per chunk on average); {len(queries)} queries of 5 words (3 rare words of a random chunk + 2 "
            "Zipf draws). Encoder: SyntheticEncoder (hashed words, no transformer): dense "
            f"{args.dim} dims (words in a rank-{min(args.dense_rank, args.dim)} subspace, 10% isotropic noise); sparse {corpus.sp_ptr[-1] / n:.1f} terms per chunk; colbert {args.colbert_dim} dims, "
            f"one vector per word for the first {args.colbert_tokens} words ({n_tok / n:.1f} per chunk, "
            f"{n_tok:,} in all), stored {args.colbert_codec}. Peers index the vectors read back from the "
            "hsearch collection (decoded token vectors for colbert)."]
    write_report(report(b, f"hsearch vs peers: {name}", data), args.out, name)
    col = None
    gc.collect()


def load_test_queries(dataset: Path, split: str, limit: int | None) -> list[str]:
    qids = []
    with open(dataset / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] not in ("query-id", "query_id") and parts[0] not in qids:
                qids.append(parts[0])
    text = {}
    with open(dataset / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                text[str(r["_id"])] = r["text"]
    out = [text[q] for q in qids if q in text]
    return out[:limit] if limit else out


def run_collection(args, work: Path):
    import torch

    from hsearch.engine import open_collection

    src = Path(args.collection)
    name = args.name or src.name
    b = Bench(args, name)
    col = open_collection(src)
    info = col.info()
    b.log(f"{info['chunks']} chunks, {info['documents']} documents, model {info['model']}")
    queries = load_test_queries(Path(args.dataset), args.split, args.queries if args.queries_given else None)
    b.log(f"{len(queries)} {args.split} queries; loading the model")
    enc_model = col.encoder
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    encs = enc_model.encode_queries(queries)
    batch_s = time.perf_counter() - t
    b.log("reading the stored vectors back")
    corpus, doc_of = read_back(col)
    # hsearch's write path on these exact vectors, timed (no model run): a scratch rebuild
    b.log("hsearch rebuild from the stored vectors (ReplayEncoder)")
    replay = ReplayEncoder(corpus, col._manifest.encoder)
    cfg = {**col.config.to_dict(), "chunk_tokens": 1_000_000, "chunk_overlap": 0, "commit_every": 10**9}
    phases = build_hsearch(work / "hsearch-replay", [{"id": str(int(i)), "text": t} for i, t in zip(corpus.ids, corpus.texts)],
                           replay, CollectionConfig.from_dict(cfg))
    sizes = store_sizes(src)
    replay_sizes = store_sizes(work / "hsearch-replay")
    shutil.rmtree(work / "hsearch-replay", ignore_errors=True)
    m = col.config
    kinds = sorted({s.stores["dense"].meta["kind"] for s in col.snapshot().segments})
    notes = {"dense": f"FAISS {'/'.join(kinds)}", "sparse": "inverted + forward index",
             "colbert": f"{m.colbert_codec}, {info['heads'].get('colbert', '')}", "bm25": f"tantivy {m.bm25_tokenizer}",
             "docs sqlite": "chunk texts, documents, metadata", "other": "manifest, locks, bookkeeping",
             "fsync": "fsync of the segment folder"}
    for part in ("dense", "sparse", "colbert", "bm25", "docs sqlite", "fsync", "other"):
        b.index_rows.append(("hsearch", part, phases.get(part), sizes.get(part) if part != "fsync" else None,
                             notes[part]))
    b.index_rows.append(("hsearch", "**total, excluding encoding**", phases["total"] - phases["encode"],
                         sizes["total"], "rebuild of the same chunks from their stored vectors (ReplayEncoder); "
                         f"the rebuilt copy takes {replay_sizes['total'] / 2**20:.1f} MiB"))
    if args.index_note:
        b.index_rows.append(("hsearch", "full `hsearch index`, including encoding", None, None, args.index_note))
    qs = QuerySet(texts=queries, dense=np.stack([e.dense for e in encs]), sparse=[e.sparse for e in encs],
                  colbert=[e.colbert for e in encs])
    b.nq = len(queries)
    b.run(col, corpus, doc_of, qs, encs, work)
    # ---- including query encoding, the real model
    rows = [("encode only: encode_queries([query]), all three representations",
             lambda i: enc_model.encode_queries([queries[i]])),
            ("encode only: dense alone", lambda i: enc_model.encode_queries([queries[i]], sparse=False, colbert=False))]
    for label, mode, opts in HSEARCH_MODES:
        if label in args.encode_modes.split(","):
            o = {"depth": args.depth, **opts}
            rows.append((f"hsearch {label}", lambda i, md=mode, o=o: col.search(queries[i], md, k=args.k, **o)))
    sec = ["### Query latency including query encoding (the collection's model, "
           f"{info['model']}, CPU, torch threads={args.threads})", "",
           f"`Collection.search(text)`: encode the query, then the same plan as above. {len(queries)} queries, "
           f"warm-up + {args.repeats} passes (encoding all {len(queries)} queries in one batched call took "
           f"{batch_s:.2f} s).", "", "| what | p50 (ms) | p95 (ms) |", "|---|---:|---:|"]
    for label, fn in rows:
        b.log(f"with encoding: {label}")
        p50, p95, _ = time_queries(fn, len(queries), args.repeats)
        sec.append(f"| {label} | {fmt_ms(p50)} | {fmt_ms(p95)} |")
    b.extra.append(sec)
    n_tok = int(corpus.cb_offsets[-1]) if corpus.cb_offsets is not None else 0
    data = [f"Data: the hsearch collection `{src}`: {info['documents']:,} documents, {info['chunks']:,} chunks, model "
            f"{info['model']} (dense {corpus.dense.shape[1]} dims; sparse {corpus.sp_ptr[-1] / len(corpus):.1f} terms "
            f"per chunk; colbert {n_tok:,} token vectors of {corpus.cb_flat.shape[1] if n_tok else 0} dims, stored "
            f"{m.colbert_codec}). Heads: {info['heads']}. Queries: {len(queries)} {args.split} queries of "
            f"`{args.dataset}`, encoded once with the collection's model. Peers index the vectors read back from the "
            "collection."]
    write_report(report(b, f"hsearch vs peers: {name}", data), args.out, name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=None, help="chunks of the synthetic collection (default "
                    "100000 when --collection is not given)")
    ap.add_argument("--collection", default=None, help="an existing hsearch collection to benchmark")
    ap.add_argument("--dataset", default=str(HERE.parents[1] / "shared" / "datasets" / "scifact"),
                    help="BEIR folder with the queries of --collection (queries.jsonl, qrels/SPLIT.tsv)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--queries", type=int, default=None, help="queries (synthetic: default 200; --collection: all "
                    "of the split unless given)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--peers", default=None, help=f"comma-separated from {', '.join(ALL_PEERS)}; 'all' (default; "
                    "--quick: all but milvus-lite, whose in-process server start dominates a smoke run) or 'none'")
    ap.add_argument("--no-qdrant-colbert", action="store_true", help="qdrant-edge without multivectors")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--dense-rank", type=int, default=48, help="synthetic: dimension of the dense word subspace")
    ap.add_argument("--colbert-dim", type=int, default=128)
    ap.add_argument("--colbert-tokens", type=int, default=48)
    ap.add_argument("--colbert-codec", default="int8")
    ap.add_argument("--dense-index", default="auto")
    ap.add_argument("--segments", type=int, default=1, help="synthetic: commits (segments) the collection is built in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encode-modes", default="dense,sparse,dense+sparse,all,dense+sparse+bm25",
                    help="--collection: hsearch modes also timed including query encoding")
    ap.add_argument("--index-note", default=None, help="--collection: how long the original `hsearch index` took "
                    "(including encoding) and where that figure comes from")
    ap.add_argument("--quick", action="store_true", help="2,000 synthetic chunks, 10 queries (smoke run)")
    ap.add_argument("--name", default=None, help="report name: OUT/engine-NAME.md")
    ap.add_argument("--out", default=None, help="folder for engine-NAME.md (printed only when not given)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    args.queries_given = args.queries is not None
    if args.peers is None:
        args.peers = ",".join(p for p in ALL_PEERS if p != "milvus-lite") if args.quick else "all"
    if args.quick:
        args.synthetic = args.synthetic or 2000
        args.queries = args.queries or 10
    if args.synthetic is None and args.collection is None:
        args.synthetic = 100_000
    args.queries = args.queries or 200
    args.out = Path(args.out) if args.out else None

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="hsearch-bench-", dir=os.environ.get("TMPDIR"))
        work = Path(tmp)
    try:
        if args.synthetic:
            run_synthetic(args, work / "synthetic")
        if args.collection:
            run_collection(args, work / "collection")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
