"""Vector backends: where a collection's dense, sparse and multi-vector representations live.

`local` keeps them in hsearch's segment stores; `qdrant` (qdrant-client: a server or cluster by URL,
or its local mode in a folder) and `qdrant-edge` (Qdrant's engine in-process) keep them in one Qdrant
collection. Documents, metadata and BM25 stay local in every case. Qdrant code is imported only when
a collection uses it, so `import hsearch` never loads a Qdrant binding.
"""
from __future__ import annotations

from pathlib import Path

from hsearch.errors import InputError

from .local import LocalSink

BACKENDS = ("local", "qdrant", "qdrant-edge")


def settle_config(config, folder: Path, built=None):
    """Check a collection's backend settings and fix what must not change later (names, paths); for an
    existing collection (`built`: its saved config), what was left unset takes the saved value."""
    if config.backend not in BACKENDS:
        raise InputError(f"unknown backend {config.backend!r}; choose from {', '.join(BACKENDS)}")
    if config.backend == "local":
        if config.backend_url or config.qdrant_collection or config.qdrant_shards or config.qdrant_replication:
            raise InputError("--url, --qdrant-collection, --shards and --replication need --backend qdrant "
                             "or qdrant-edge")
        return config
    from .qdrant import settle

    return settle(config, folder, built)


def open_sink(config, folder: Path, manifest):
    """The writer's sink for this collection's vectors."""
    if config.backend == "local":
        return LocalSink(config)
    from .qdrant import QdrantSink

    return QdrantSink(config, folder, manifest)


def open_remote(config, folder: Path, manifest, dead_chunks):
    """The source for the signals a non-local backend holds (None for the local backend)."""
    if config.backend == "local":
        return None
    from .qdrant import QdrantSource

    return QdrantSource(config, folder, manifest, dead_chunks)
