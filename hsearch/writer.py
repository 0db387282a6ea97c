"""The write path: documents -> chunks -> one encoder pass -> a new immutable segment -> a new manifest.

An index run is a sequence of commits of at most `commit_every` chunks. Each commit writes and
fsyncs its segment folder, adds its rows to SQLite and its chunks to tantivy, and only then
replaces the manifest. A run killed at any point leaves the last manifest, and so the previous
collection, intact; the next run removes the leftovers and encodes only what is still missing.
"""
from __future__ import annotations

import fcntl
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsearch.backends import open_sink
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError
from hsearch.index.bm25 import BM25Index
from hsearch.ingest.chunking import chunk_text
from hsearch.ingest.loaders import Document
from hsearch.snapshot import SEGMENTS
from hsearch.storage.atomic import fsync_tree
from hsearch.storage.docstore import DocStore
from hsearch.storage.manifest import Manifest, Segment, write_tombstones

log = logging.getLogger("hsearch")


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    commits: int = 0
    truncated_docs: list = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, {self.deleted} deleted; "
                f"{self.chunks} chunks encoded in {self.commits} commit(s)")


class Writer:
    """Holds the collection's write lock for its lifetime (one writer at a time; readers never wait)."""

    def __init__(self, folder: Path, manifest: Manifest, config: CollectionConfig, encoder):
        self.folder, self.manifest, self.config, self.encoder = folder, manifest, config, encoder
        self._lock = open(folder / "write.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectionError(f"another hsearch process is writing to {folder}; wait for it to finish") from None
        try:
            self.docs = DocStore(folder / "docs.sqlite")
            self.bm25 = BM25Index(folder / "bm25", config.bm25_tokenizer) if config.bm25 else None
            self.sink = open_sink(config, folder, manifest)  # where the vectors go (hsearch/backends/)
            self._cleanup()
        except BaseException:
            self._unlock()
            raise

    def close(self):
        try:
            self.sink.close()
        finally:
            self._unlock()

    def _unlock(self):
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    # ---- leftovers of interrupted runs ------------------------------------------------------
    def _cleanup(self):
        live = {s.name for s in self.manifest.segments}
        seg_dir = self.folder / SEGMENTS
        seg_dir.mkdir(exist_ok=True)
        for d in seg_dir.iterdir():
            if d.name not in live:
                shutil.rmtree(d, ignore_errors=True)
        for f in self.folder.glob("tombstones-*.npz"):
            if f.name != self.manifest.tombstones:
                f.unlink()
        self.docs.delete_rows_not_in(sorted(live))
        if self.bm25 is not None:
            self.bm25.delete_from(self.manifest.next_chunk_id)
            self.bm25.commit()
        self.sink.recover(self.manifest, self.manifest.load_tombstones(self.folder)[0])

    # ---- the run ----------------------------------------------------------------------------
    def sync(self, documents, source: str, delete_missing: bool = True, progress: bool = False) -> IndexReport:
        """Make the collection hold exactly `documents` for `source` (add new, replace changed, and
        with delete_missing, delete those of `source` no longer present)."""
        report = IndexReport()
        dead_chunks, dead_docs = self.manifest.load_tombstones(self.folder)
        live = self.docs.live_docs([s.name for s in self.manifest.segments], dead_docs)
        seen: set[str] = set()
        pending: list[tuple[Document, int | None]] = []
        pending_chunks = 0
        for doc in documents:
            if doc.id in seen:
                log.warning("duplicate document id %r in %s; keeping the first", doc.id, source)
                continue
            seen.add(doc.id)
            old = live.get(doc.id)
            if old and old[1] == doc.hash:
                report.unchanged += 1
                continue
            if old:
                report.updated += 1
            else:
                report.added += 1
            pending.append((doc, old[0] if old else None))
            pending_chunks += 1 + len(doc.text) // 1500  # rough, only to size commits
            if pending_chunks >= self.config.commit_every:
                self._commit(pending, [], source, report, progress)
                pending, pending_chunks = [], 0
        gone = []
        if delete_missing:  # docs committed earlier in this run are in `seen`, so `live` still suffices
            gone = [row for doc_id, (row, _h, src) in live.items() if src == source and doc_id not in seen]
            report.deleted = len(gone)
        if pending or gone:
            self._commit(pending, gone, source, report, progress)
        return report

    def delete(self, doc_ids: list[str]) -> int:
        _dc, dead_docs = self.manifest.load_tombstones(self.folder)
        live = self.docs.live_docs([s.name for s in self.manifest.segments], dead_docs)
        rows = [live[d][0] for d in doc_ids if d in live]
        if rows:
            self._commit([], rows, "", IndexReport(), False)
        return len(rows)

    def _commit(self, pending, delete_rows, source, report: IndexReport, progress: bool):
        m = self.manifest
        gen = m.generation + 1
        replaced = [row for _d, row in pending if row is not None] + list(delete_rows)
        new_segments = list(m.segments)
        next_id = m.next_chunk_id
        if pending:
            seg, next_id = self._write_segment(gen, pending, source, next_id, report, progress)
            new_segments.append(seg)
        tomb = m.tombstones
        replaced_chunks = self.docs.chunk_ids_of_rows(replaced) if replaced else None
        if replaced:
            dead_chunks, dead_docs = m.load_tombstones(self.folder)
            tomb = write_tombstones(self.folder, gen, np.concatenate([dead_chunks, replaced_chunks]),
                                    np.concatenate([dead_docs, np.asarray(replaced, np.int64)]))
        new = Manifest(generation=gen, config=self.config.to_dict(), encoder=m.encoder, segments=new_segments,
                       next_chunk_id=next_id, tombstones=tomb)
        new.save(self.folder)  # the commit point
        self.manifest = new
        report.commits += 1
        self.sink.commit(gen, replaced_chunks if replaced else np.empty(0, np.int64))
        if self.bm25 is not None and replaced:  # safe now: the manifest no longer shows these chunks
            self.bm25.delete(replaced_chunks)
            self.bm25.commit()

    def _write_segment(self, gen, pending, source, first_id, report, progress):
        enc = self.encoder
        size = self.config.chunk_tokens or self._default_chunk_tokens()
        doc_rows, chunk_rows, texts, owner, owner_docs = [], [], [], [], []
        next_row = self.docs.next_doc_row()
        name = f"seg-{gen:06d}"
        for doc, _old in pending:
            body = f"{doc.title}\n{doc.text}" if doc.title else doc.text
            chunks = chunk_text(body, enc.tokenizer, size, min(self.config.chunk_overlap, size // 2))
            chunks = chunks[:self.config.max_chunks]  # None keeps all
            doc_rows.append({"row": next_row, "doc_id": doc.id, "segment": name, "source": source, "path": doc.path,
                             "title": doc.title, "hash": doc.hash, "n_chunks": len(chunks),
                             "metadata": json.dumps(doc.metadata, ensure_ascii=False)})
            for n, c in enumerate(chunks):
                chunk_rows.append({"chunk_id": first_id + len(texts), "doc_row": next_row, "chunk_no": n,
                                   "text": c.text, "start": c.start, "end": c.end})
                texts.append(c.text)
                owner.append(next_row)
                owner_docs.append(doc)
            next_row += 1
        ids = np.arange(first_id, first_id + len(texts), dtype=np.int64)
        reps = enc.encode_documents(texts, colbert=self.config.store_colbert, progress=progress)
        folder = self.folder / SEGMENTS / name
        tmp = folder.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.sink.write(tmp, ids, reps, owner_docs)  # segment files, or a Qdrant upsert (durable on return)
        np.save(tmp / "doc_rows.npy", np.asarray(owner, dtype=np.int64))
        fsync_tree(tmp)
        tmp.rename(folder)
        self.docs.insert(doc_rows, chunk_rows)
        if self.bm25 is not None:
            self.bm25.add(ids, texts)
            self.bm25.commit()
        report.chunks += len(texts)
        return Segment(name=name, start=first_id, end=first_id + len(texts)), first_id + len(texts)

    def _default_chunk_tokens(self) -> int:
        enc = self.encoder
        prefix = len(enc.tokenizer(enc.spec.document_prefix, add_special_tokens=False)["input_ids"])
        # max_tokens: the long-context target when the encoder has one, so chunks grow to it
        window = getattr(enc, "max_tokens", enc.spec.max_length)
        return window - enc.tokenizer.num_special_tokens_to_add() - prefix
