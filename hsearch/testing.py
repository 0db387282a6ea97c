"""The test doubles of the encoder seam, shared by tests/ and benchmarks/: one word tokenizer and one
fake encoder. Nothing in the package imports this module; it imports only the encoder contract.

`FakeEncoder` stands in for the transformer behind the interface the writer and the planner use
(`encode_documents`, `encode_queries`, `tokenizer`, `spec`, `dim`, `colbert_dim`), plugged in with
`open_collection(encoder=...)`. It is deterministic, fast, and texts that share words get nearby
vectors, so a query made of a document's words finds it.
"""
from __future__ import annotations

import hashlib
import re
import time
import zlib

import numpy as np


class WordTokenizer:
    """Lower-cased \\w+ words as tokens, token id = crc32(word) & 0x7FFFFFFF, called like a Hugging Face
    tokenizer (the writer's chunker cuts with it; no special tokens)."""

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


class FakeEncoder:
    """A deterministic stand-in for the transformer.

    Per text (words as tokens, see WordTokenizer; tf = count of a word, g(w) in [0.25, 1] a made-up
    idf from the word's hash, b(w) = token id mod 2**16 a bucket):
      dense   (dim)                  normalize(sum_w (1 + ln tf) g(w) R[b(w)] + noise). R = U V: each word a
                                     random point of a `rank`-dimensional subspace, so the vectors have the
                                     low intrinsic dimension of sentence embeddings (full-rank random word
                                     vectors are near-uniform: HNSW recall@10 with M=32, ef=128 was 0.72 at
                                     30k chunks, 0.96 at rank 64, 0.998 at rank 32); noise: 0.1 of the
                                     vector's norm, isotropic, seeded by the text
      sparse  {token id: weight}     (0.1 + 0.3 g(w)) (1 + ln tf) (1 + jitter u), u uniform in [0, 1) seeded
                                     by the text: BGE-M3's weight range
      colbert (<= colbert_tokens, colbert_dim)   one vector per word of the first colbert_tokens words
                                     (every word: None): normalize(C[b(w)] + 0.3 noise), C a fixed Gaussian table
    The noise makes dense and multi-vector scores distinct from document to document; `jitter` does the
    same for sparse scores (without it, two texts with the same query words tie), for tests that compare
    two engines whose tie-breaks differ. `seconds` accumulates the time spent encoding.
    """

    BUCKETS = 1 << 16

    def __init__(self, dim: int = 384, colbert_dim: int = 128, colbert_tokens: int | None = 48,
                 rank: int = 48, seed: int = 0, jitter: float = 0.0, name: str | None = None):
        from hsearch.encode.base import EncoderSpec

        self.dim, self.colbert_dim, self.colbert_tokens, self.seed = dim, colbert_dim, colbert_tokens, seed
        self.jitter = jitter
        rng = np.random.default_rng(seed)
        rank = min(rank, dim)
        U = rng.standard_normal((self.BUCKETS, rank), dtype=np.float32) / np.float32(np.sqrt(rank))
        V = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)  # orthonormal rows
        self.R = U @ V
        self.C = rng.standard_normal((self.BUCKETS, colbert_dim), dtype=np.float32) / np.float32(np.sqrt(colbert_dim))
        self.tokenizer = WordTokenizer()
        key = f"synthetic-v2:{dim}:{colbert_dim}:{colbert_tokens}:{rank}:{seed}" + (f":jitter={jitter}" if jitter else "")
        self.spec = EncoderSpec(name=name or f"synthetic-{dim}d-colbert{colbert_dim}x{colbert_tokens}", pooling="mean",
                                max_length=512, fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
                                extra={"source": "hsearch/testing.py FakeEncoder (hashed words)"})
        self.seconds = 0.0

    @staticmethod
    def _g(ids: np.ndarray) -> np.ndarray:
        return 0.25 + 0.75 * (((ids * 2654435761) >> 11) & 0xFFFF).astype(np.float32) / 65535.0

    def encode_documents(self, texts, colbert: bool = True, progress: bool = False, **_):
        return self.encode(texts, colbert=colbert)

    def encode_queries(self, texts, dense: bool = True, sparse: bool = True, colbert: bool = True, **_):
        return self.encode(texts, dense=dense, sparse=sparse, colbert=colbert)

    def encode(self, texts, dense=True, sparse=True, colbert=True) -> list:
        t0 = time.perf_counter()
        out = [self._one(text, dense, sparse, colbert) for text in texts]
        self.seconds += time.perf_counter() - t0
        return out

    def _one(self, text: str, dense: bool = True, sparse: bool = True, colbert: bool = True):
        from hsearch.types import Encoded

        ids = self.tokenizer.ids(text)
        u, c = np.unique(ids, return_counts=True)
        g = self._g(u)
        tf = (1.0 + np.log(c)).astype(np.float32)
        rng = np.random.default_rng(zlib.crc32(text.encode()) ^ self.seed)
        enc = Encoded(n_tokens=len(ids))
        if dense:
            v = (tf * g) @ self.R[u % self.BUCKETS] if len(u) else np.zeros(self.dim, np.float32)
            noise = rng.standard_normal(self.dim, dtype=np.float32)
            v = v + 0.1 * (np.linalg.norm(v) or 1.0) / np.linalg.norm(noise) * noise
            enc.dense = (v / np.linalg.norm(v)).astype(np.float32)
        if sparse:
            w = (0.1 + 0.3 * g) * tf
            if self.jitter:
                w = w * (1 + self.jitter * rng.random(len(u)))
            enc.sparse = dict(zip(u.tolist(), w.tolist()))
        if colbert:
            first = ids[:self.colbert_tokens] if len(ids) else np.zeros(1, np.int64)
            m = self.C[first % self.BUCKETS]
            m += np.float32(0.3 / np.sqrt(self.colbert_dim)) * rng.standard_normal(m.shape, dtype=np.float32)
            m /= np.linalg.norm(m, axis=1, keepdims=True)
            enc.colbert = m
        return enc
