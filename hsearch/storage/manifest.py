"""The manifest: the one small file that says which segments and tombstones make the collection.

It is replaced atomically, and only after every file it names is on disk, so a reader that loads
it sees a complete, consistent snapshot however a writer dies.
"""
from __future__ import annotations

import json
import mmap
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError

from .arrays import load_npz
from .atomic import fsync_dir, write_json_atomic

FORMAT = 1
MANIFEST = "manifest.json"
# 8 bytes, a count that every manifest save adds one to after the manifest is in place: readers map it and read it
# on every query (a memory read) instead of asking the file system whether the manifest changed (a system call per
# query: benchmarks/RESULTS.md, "Query path, session 17"). Advisory only: the manifest is the commit, and a reader
# still checks it now and then (engine.py, REFRESH_S).
COMMITS = "commits"


@dataclass
class Segment:
    name: str
    start: int  # chunk ids [start, end)
    end: int
    # segments merged into this one (hsearch/merge.py): their document rows in docs.sqlite keep the
    # name they were written under, so a merge never rewrites SQLite before its manifest commits
    parts: list[str] = field(default_factory=list)
    dropped: int = 0  # deleted chunks of [start, end) a merge left out of the stores

    @property
    def doc_segments(self) -> list[str]:
        """Names under which this segment's document rows are stored."""
        return [self.name, *self.parts]


@dataclass
class Manifest:
    generation: int = 0
    config: dict = field(default_factory=dict)
    encoder: dict = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    next_chunk_id: int = 0
    tombstones: str | None = None  # file with deleted chunk ids and doc rows, named by generation
    format: int = FORMAT

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CollectionError(f"{folder} is not an hsearch collection (no {MANIFEST}); "
                                  "build one with `hsearch index PATH --collection DIR`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CollectionError(f"{path} is corrupted ({e}); restore it from a backup or rebuild the "
                                  "collection with `hsearch index`") from None
        if data.get("format") != FORMAT:
            raise CollectionError(f"{path} has format {data.get('format')}, this hsearch reads {FORMAT}; "
                                  "rebuild the collection")
        data["segments"] = [Segment(**s) for s in data.get("segments", [])]
        return cls(**data)

    @property
    def doc_segments(self) -> list[str]:
        """Every name under which a live segment's document rows are stored (docs.sqlite's `segment`)."""
        return [n for s in self.segments for n in s.doc_segments]

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST, asdict(self))
        count_commit(folder)

    def load_tombstones(self, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        """(sorted deleted chunk ids, sorted deleted doc rows)."""
        if not self.tombstones:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        try:
            return load_npz(folder / self.tombstones, ("chunks", "docs"))
        except (OSError, ValueError, KeyError) as e:
            raise CollectionError(f"tombstone file {self.tombstones} is unreadable ({e}); rebuild the collection") from None


def write_tombstones(folder: Path, generation: int, chunks: np.ndarray, docs: np.ndarray) -> str:
    name = f"tombstones-{generation:06d}.npz"
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, chunks=np.unique(chunks.astype(np.int64)), docs=np.unique(docs.astype(np.int64)))
        f.flush()
        import os

        os.fsync(f.fileno())
    tmp.rename(folder / name)
    fsync_dir(folder)
    return name


def count_commit(folder: Path) -> None:
    """Add one to the collection's commit count (COMMITS), read by `CommitCount`; writers hold the write lock."""
    fd = os.open(folder / COMMITS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        old = os.pread(fd, 8, 0)
        n = int.from_bytes(old, "little") + 1 if len(old) == 8 else 1
        os.pwrite(fd, (n % 2**64).to_bytes(8, "little"), 0)
    finally:
        os.close(fd)


class CommitCount:
    """A reader's shared map of COMMITS: `value()` changes whenever a writer (in any process) commits."""

    def __init__(self, folder: Path):
        with open(folder / COMMITS, "rb") as f:  # OSError, or ValueError for a file not yet 8 bytes long
            self._map = mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)

    def value(self) -> bytes:
        return self._map[:8]

    @classmethod
    def open(cls, folder: Path) -> "CommitCount | None":
        """The count of `folder`; None where it has none yet (a collection no writer of this version committed to)."""
        try:
            return cls(folder)
        except (OSError, ValueError):
            return None
