"""Every knob of a collection, frozen and saved in its manifest."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from hsearch.errors import InputError


@dataclass(frozen=True)
class CollectionConfig:
    model: str = "e5-small"
    chunk_tokens: int | None = None  # None: the encoder's window (the long-context target) minus specials and prefix
    chunk_overlap: int = 64
    dense_index: str = "auto"  # auto | flat | hnsw
    colbert_codec: str = "int8"  # int8 | float16 | float32 | pq
    store_colbert: bool = True
    sparse_quantize: bool = False  # ceil(100 * w) as integers, as BGE-M3's own evaluation did
    bm25: bool = True
    # BM25 analysis (hsearch/index/analyzers.py): auto, words, pieces, a stemmer's language, or en_stem (every
    # collection built before analyzers). None: the collection's own, or auto for a new one (settled by the engine).
    bm25_analyzer: str | None = None
    commit_every: int = 20_000  # chunks per segment: an interrupted run keeps what it committed
    # Training-free context extension (hsearch/encode/longctx.py): "pi", "mcls+rp", "selfextend,w=512",
    # or with its length inside ("pi:4096"); None: the model's own window.
    long_context: str | None = None
    long_context_length: int | None = None  # the target length, when not given inside long_context
    # Keep only a document's first N chunks (the rest is neither encoded nor in BM25). 1 is LongEmbed's
    # truncation baseline: one window per document, as a plain 512-token model sees it.
    max_chunks: int | None = None
    # Where dense / sparse / multi-vectors live (hsearch/backends/): local | qdrant | qdrant-edge.
    backend: str = "local"
    backend_url: str | None = None  # qdrant: http(s)://host:6333, a folder (local mode) or :memory:; edge: a folder
    qdrant_collection: str | None = None  # filled in at creation
    qdrant_multivector: bool = True  # False: multi-vectors in hsearch's compressed store beside the collection
    qdrant_shards: int | None = None  # cluster only: shard_number, replication_factor of the Qdrant collection
    qdrant_replication: int | None = None

    def __post_init__(self):
        if self.chunk_tokens is not None and self.chunk_tokens < 16:
            raise InputError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if self.chunk_overlap < 0 or (self.chunk_tokens and self.chunk_overlap >= self.chunk_tokens):
            raise InputError("chunk_overlap must be >= 0 and smaller than chunk_tokens")
        if self.commit_every < 1:
            raise InputError("commit_every must be at least 1")
        if self.max_chunks is not None and self.max_chunks < 1:
            raise InputError(f"max_chunks must be at least 1, got {self.max_chunks}")
        if self.long_context_length is not None and not self.long_context:
            raise InputError("long_context_length needs a long_context method too, e.g. --long-context pi")
        if self.long_context_length is not None and self.long_context_length < 2:
            raise InputError(f"long_context_length must be at least 2 tokens, got {self.long_context_length}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CollectionConfig":
        known = {f.name for f in fields(cls)}
        if "bm25_analyzer" not in d:  # a manifest from before analyzers: its tantivy tokenizer (always en_stem)
            d = {**d, "bm25_analyzer": d.get("bm25_tokenizer", "en_stem")}
        return cls(**{k: v for k, v in d.items() if k in known})
