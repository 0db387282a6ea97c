"""An hsearch collection built through the engine with each store's write timed in place, its size on
disk per store, and its stored vectors read back (so peers index exactly what hsearch holds)."""
from __future__ import annotations

import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from engine_peers import Corpus, disk_usage

from hsearch.config import CollectionConfig
from hsearch.encode.base import EncoderSpec
from hsearch.index.kernels import ranges
from hsearch.testing import WordTokenizer
from hsearch.types import Encoded


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
        try:  # checkouts before the hit columns lack them (compare_checkouts.py runs older ones)
            targets.append(("hit columns", importlib.import_module("hsearch.storage.hitcols"), "write"))
        except ImportError:
            pass
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
    sizes["hit columns"] = sum(disk_usage(p / "hits") for p in seg.iterdir())
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
