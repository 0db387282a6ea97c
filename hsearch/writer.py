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
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsearch import merge
from hsearch.backends import open_sink
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError
from hsearch.index.bm25 import BM25Index
from hsearch.ingest.chunking import chunk_text
from hsearch.ingest.loaders import Document
from hsearch.snapshot import SEGMENTS, live_mask
from hsearch.storage import hitcols
from hsearch.storage.atomic import fsync_tree
from hsearch.storage.docstore import DocStore
from hsearch.storage.manifest import COMMITS, Manifest, Segment, count_commit, write_tombstones
from hsearch.types import PASSAGE, WHOLE

log = logging.getLogger("hsearch")
# A commit holds every one of its chunks' token vectors (float32) in memory until its segment is
# written, so long documents bound it by text as well as by `commit_every` chunks: ~6M characters are
# ~1.5-2M tokens, ~3 GB of 384-dim vectors. (QMSum's 232 transcripts, 3.2M tokens in two views, were
# one commit under the chunk count alone and were killed at 24 GB.)
MAX_COMMIT_CHARS = 6_000_000
LOCK_POLL_S = 0.05  # how often a writer waiting for another one's lock tries again


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
    """Holds the collection's write lock for its lifetime (one writer at a time; readers never wait), except
    while the encoder runs: other writers commit meanwhile, and what a commit writes (ids, rows, which
    documents it replaces) is decided after the lock is taken again (`_encode_unlocked`).

    `wait`: seconds to wait for another writer (another process: `hsearch index`, a server's writer thread)
    to release the lock before giving up with a CollectionError."""

    def __init__(self, folder: Path, config: CollectionConfig, encoder, wait: float = 0.0):
        self.folder, self.config, self.encoder, self._wait = folder, config, encoder, wait
        self._lock = open(folder / "write.lock", "w")
        try:
            self._acquire()
        except CollectionError:
            self._lock.close()
            raise
        try:
            # Read under the lock: a manifest read before it can predate another process's last commit, and
            # _cleanup would then remove that commit's segment as a leftover (its documents lost).
            self.manifest = Manifest.load(folder)
            if not (folder / COMMITS).exists():  # a collection from before the count: readers map it from now on
                count_commit(folder)
            self.docs = DocStore(folder / "docs.sqlite")
            # one BM25 index per view, so that each has its own statistics (document count, mean length)
            views = {PASSAGE: "bm25", WHOLE: "bm25-whole"} if config.long_context else {PASSAGE: "bm25"}
            self.bm25 = {v: BM25Index(folder / name, config.bm25_analyzer or "auto") for v, name in views.items()} \
                if config.bm25 else {}
            self.sink = open_sink(config, folder, self.manifest)  # where the vectors go (hsearch/backends/)
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

    def _acquire(self):
        deadline = time.monotonic() + self._wait
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CollectionError(f"another hsearch process is writing to {self.folder} (waited "
                                          f"{self._wait:.0f} s); wait for it to finish") from None
                time.sleep(LOCK_POLL_S)

    def _encode_unlocked(self, encode):
        """Run `encode()` (the slow part of a commit) with the write lock released, so that other writers
        (a server's, another `hsearch index`) commit meanwhile; then take the lock again and re-read what
        they committed (ids, rows and replaced documents are decided after this, under the lock)."""
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        try:
            return encode()
        finally:
            self._acquire()
            self.manifest = Manifest.load(self.folder)
            self._cleanup()  # what a writer killed meanwhile left

    # ---- leftovers of interrupted runs ------------------------------------------------------
    def _cleanup(self):
        live = {s.name for s in self.manifest.segments}
        seg_dir = self.folder / SEGMENTS
        seg_dir.mkdir(exist_ok=True)
        for d in seg_dir.iterdir():  # also the folders a merge replaced, if it died before removing them
            if d.name not in live:
                shutil.rmtree(d, ignore_errors=True)
        for f in self.folder.glob("tombstones-*.npz"):
            if f.name != self.manifest.tombstones:
                f.unlink()
        self.docs.delete_rows_not_in(sorted(self.manifest.doc_segments))
        tombstones, dead_chunks = self.manifest.tombstones, self.manifest.load_tombstones(self.folder)[0]
        for bm25 in self.bm25.values():
            bm25.delete_from(self.manifest.next_chunk_id)
            behind = bool(tombstones) and bm25.purged() != tombstones  # killed after its manifest, before BM25's deletions
            if behind:
                bm25.delete(dead_chunks)
            bm25.commit()
            if behind:
                bm25.mark_purged(tombstones)
        self.sink.recover(self.manifest, dead_chunks)

    # ---- the run ----------------------------------------------------------------------------
    def sync(self, documents, source: str, delete_missing: bool = True, progress: bool = False) -> IndexReport:
        """Make the collection hold exactly `documents` for `source` (add new, replace changed, and
        with delete_missing, delete those of `source` no longer present)."""
        report = IndexReport()
        dead_chunks, dead_docs = self.manifest.load_tombstones(self.folder)
        live = self.docs.live_docs(self.manifest.doc_segments, dead_docs)
        seen: set[str] = set()
        pending: list[Document] = []
        pending_chunks = pending_chars = 0
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
            pending.append(doc)  # which row it replaces is decided at its commit, under the lock
            pending_chunks += 1 + len(doc.text) // 1500  # rough, only to size commits
            pending_chars += len(doc.text) * (2 if self.config.long_context else 1)  # two views: encoded twice
            if pending_chunks >= self.config.commit_every or pending_chars >= MAX_COMMIT_CHARS:
                self._commit(pending, [], source, report, progress)
                pending, pending_chunks, pending_chars = [], 0, 0
        def gone(live):  # docs committed earlier in this run are in `seen`; read under the last commit's lock
            rows = [row for doc_id, (row, _h, src) in live.items() if src == source and doc_id not in seen]
            report.deleted = len(rows)
            return rows

        if pending or (delete_missing and gone(live)):
            self._commit(pending, [], source, report, progress, gone if delete_missing else None)
        return report

    def delete(self, doc_ids: list[str]) -> int:
        _dc, dead_docs = self.manifest.load_tombstones(self.folder)
        live = self.docs.live_docs(self.manifest.doc_segments, dead_docs)
        rows = [live[d][0] for d in doc_ids if d in live]
        if rows:
            self._commit([], rows, "", IndexReport(), False)
        return len(rows)

    def _commit(self, pending, delete_rows, source, report: IndexReport, progress: bool, gone=None):
        prepared = self._prepare(pending, progress) if pending else None  # the lock is released meanwhile
        m = self.manifest
        gen = m.generation + 1
        replaced = list(delete_rows)
        if pending or gone is not None:  # the documents live now: another writer may have committed while we encoded
            live = self.docs.live_docs(m.doc_segments, m.load_tombstones(self.folder)[1])
            replaced += [live[doc.id][0] for doc in pending if doc.id in live]
            replaced += gone(live) if gone is not None else []
        new_segments = list(m.segments)
        next_id = m.next_chunk_id
        if pending:
            seg, next_id = self._write_segment(gen, prepared, source, next_id, report)
            new_segments.append(seg)
        tomb = m.tombstones
        replaced_chunks = self.docs.chunk_ids_of_rows(replaced) if replaced else None
        if replaced:
            dead_chunks, dead_docs = m.load_tombstones(self.folder)
            tomb = write_tombstones(self.folder, gen, np.concatenate([dead_chunks, replaced_chunks]),
                                    np.concatenate([dead_docs, np.asarray(replaced, np.int64)]))
        encoder = dict(m.encoder)
        if pending:  # how this commit's vectors were computed ("torch/bf16"): bf16 vectors differ slightly from fp32 ones
            used = f"{getattr(self.encoder, 'runtime', 'custom')}/{getattr(self.encoder, 'precision', 'custom')}"
            encoder["precisions"] = sorted(set(encoder.get("precisions") or []) | {used})
        new = Manifest(generation=gen, config=self.config.to_dict(), encoder=encoder, segments=new_segments,
                       next_chunk_id=next_id, tombstones=tomb)
        new.save(self.folder)  # the commit point
        self.manifest = new
        report.commits += 1
        self.sink.commit(gen, replaced_chunks if replaced else np.empty(0, np.int64))
        for bm25 in self.bm25.values() if replaced else ():  # safe now: the manifest no longer shows these chunks
            bm25.delete(replaced_chunks)
            bm25.commit()
            bm25.mark_purged(tomb)

    # ---- merging (hsearch/merge.py) ---------------------------------------------------------
    def merge(self, everything: bool = False) -> int:
        """Merge segments as the policy asks (`everything`: all into one, every deleted chunk dropped,
        as `hsearch optimize` does); each merge is a commit. Returns how many merges were committed."""
        done = 0
        while True:
            m = self.manifest
            dead_chunks, _dd = m.load_tombstones(self.folder)
            if everything:
                n = len(m.segments)
                one = n == 1 and (merge.dead_in(m.segments[0], dead_chunks)
                                  or merge.lacks_hit_columns(self.folder / SEGMENTS, m.segments[0]))
                run = (0, n) if n > 1 or one else None
            else:
                run = merge.plan_merge(m.segments, dead_chunks)
            if run is None:
                return done
            self._merge(*run, dead_chunks)
            done += 1
            if everything:
                return done

    def compact_bm25(self) -> bool:
        """Rewrite each BM25 index as one tantivy segment of the live chunks (`BM25Index.compact`), after
        `merge(everything=True)`. Returns whether any was rewritten."""
        m = self.manifest
        dead = m.load_tombstones(self.folder)[0]
        starts, ends = (np.array([getattr(s, a) for s in m.segments], np.int64) for a in ("start", "end"))
        live = lambda ids: live_mask(ids, starts, ends, dead)  # noqa: E731
        texts = lambda ids: {cid: c["text"] for cid, c in self.docs.chunks(ids).items()}  # noqa: E731
        return any([bm25.compact(texts, live) for bm25 in self.bm25.values()])

    def purge(self) -> None:
        """Drop the texts of deleted documents from docs.sqlite (after `merge(everything=True)`; a query on
        an older snapshot that meets one of them is run again on the new one, see query/execute.py)."""
        dead_docs = self.manifest.load_tombstones(self.folder)[1]
        if len(dead_docs):  # VACUUM rewrites the whole file: not when nothing was deleted
            self.docs.purge_texts(dead_docs)

    def _merge(self, i: int, j: int, dead_chunks: np.ndarray) -> None:
        m = self.manifest
        gen = m.generation + 1
        name = f"seg-{gen:06d}"
        tmp = self.folder / SEGMENTS / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        old = m.segments[i:j]
        seg = merge.write_merged(self.folder / SEGMENTS, old, dead_chunks, self.config, tmp, name,
                                 self.docs.chunk_records)
        fsync_tree(tmp)
        tmp.rename(self.folder / SEGMENTS / name)
        new = Manifest(generation=gen, config=m.config, encoder=m.encoder,
                       segments=[*m.segments[:i], seg, *m.segments[j:]], next_chunk_id=m.next_chunk_id,
                       tombstones=m.tombstones)
        new.save(self.folder)  # the commit point
        self.manifest = new
        self.sink.commit(gen, np.empty(0, np.int64))
        for s in old:  # no snapshot opened from now on lists them; open ones keep their files open
            shutil.rmtree(self.folder / SEGMENTS / s.name, ignore_errors=True)

    def _prepare(self, pending, progress):
        """Chunk and encode `pending` (the lock released while the encoder runs): (view flags, per document
        (doc, {view: chunks}, BM25 analyzer), {view: representations in chunk order})."""
        enc = self.encoder
        # With a long-context method every document has two views (hsearch/types.py): passages encoded
        # by the plain model, and the whole document (cut only past the target length) by the extended one.
        plain = getattr(enc, "passage_encoder", enc)
        views = [(PASSAGE, plain, self.config.chunk_tokens or self._default_chunk_tokens(plain))]
        if plain is not enc:
            views.append((WHOLE, enc, self._default_chunk_tokens(enc)))
        docs = []
        for doc in pending:
            body = f"{doc.title}\n{doc.text}" if doc.title else doc.text
            parts = {view: chunk_text(body, enc.tokenizer, size, min(self.config.chunk_overlap, size // 2))
                     [:self.config.max_chunks] for view, _e, size in views}  # max_chunks None keeps all
            meta = doc.metadata or {}
            # the BM25 word analyzer its chunks get (one per document, from its whole text)
            analyzer = self.bm25[PASSAGE].choose(body, meta.get("lang", meta.get("language"))) if self.bm25 else None
            docs.append((doc, parts, analyzer))
        reps = self._encode_unlocked(lambda: {
            view: encoder.encode_documents([c.text for _d, parts, _a in docs for c in parts[view]],
                                           colbert=self.config.store_colbert, progress=progress)
            for view, encoder, _size in views})
        return [view for view, _e, _s in views], docs, reps

    def _write_segment(self, gen, prepared, source, first_id, report):
        views, docs, reps = prepared
        doc_rows, chunk_rows, owner, owner_docs, flags, all_reps = [], [], [], [], [], []
        analyzer_of = {}
        texts = {view: [] for view in views}
        next_row = self.docs.next_doc_row()
        name = f"seg-{gen:06d}"
        for doc, parts, analyzer in docs:
            doc_rows.append({"row": next_row, "doc_id": doc.id, "segment": name, "source": source, "path": doc.path,
                             "title": doc.title, "hash": doc.hash, "n_chunks": len(parts[PASSAGE]),
                             "metadata": json.dumps(doc.metadata, ensure_ascii=False)})
            for view, chunks in parts.items():
                texts[view] += [(next_row, doc, n, c) for n, c in enumerate(chunks)]
            analyzer_of[next_row] = analyzer
            next_row += 1
        for view in views:
            for row, doc, n, c in texts[view]:
                chunk_rows.append({"chunk_id": first_id + len(owner), "doc_row": row, "chunk_no": n,
                                   "text": c.text, "start": c.start, "end": c.end})
                owner.append(row)
                owner_docs.append(doc)
                flags.append(view)
            all_reps += reps[view]
        reps = all_reps
        ids = np.arange(first_id, first_id + len(owner), dtype=np.int64)
        folder = self.folder / SEGMENTS / name
        tmp = folder.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        views_of = np.asarray(flags, dtype=np.uint8) if len(views) > 1 else None
        self.sink.write(tmp, ids, reps, owner_docs, views_of)  # segment files, or a Qdrant upsert (durable on return)
        np.save(tmp / "doc_rows.npy", np.asarray(owner, dtype=np.int64))
        if views_of is not None:
            np.save(tmp / "views.npy", views_of)
        hitcols.write(tmp, [(d["doc_id"], d["path"], d["title"], d["metadata"]) for d in doc_rows],
                      np.asarray(owner, np.int64) - (doc_rows[0]["row"] if doc_rows else 0),
                      [c["chunk_no"] for c in chunk_rows], [hitcols.snippet(c["text"]) for c in chunk_rows])
        fsync_tree(tmp)
        tmp.rename(folder)
        self.docs.insert(doc_rows, chunk_rows)
        flags = np.asarray(flags)
        for view, bm25 in self.bm25.items():
            mine = np.nonzero(flags == view)[0]
            bm25.add(ids[mine], [chunk_rows[i]["text"] for i in mine], [analyzer_of[owner[i]] for i in mine])
            bm25.commit()
        report.chunks += len(ids)
        return Segment(name=name, start=first_id, end=first_id + len(ids)), first_id + len(ids)

    def _default_chunk_tokens(self, enc) -> int:
        """The encoder's window (`max_tokens`: the long-context target when it has one) less the
        special tokens and the document prefix."""
        prefix = len(enc.tokenizer(enc.spec.document_prefix, add_special_tokens=False)["input_ids"])
        window = getattr(enc, "max_tokens", enc.spec.max_length)
        return window - enc.tokenizer.num_special_tokens_to_add() - prefix
