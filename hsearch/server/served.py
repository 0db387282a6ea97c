"""One served collection: a reader shared by every request thread, and one writer thread fed by a queue.

Reads and writes use two `Collection` objects over the same folder. Queries run concurrently on the
reader's latest snapshot (a writer's commit replaces the manifest atomically; the next query sees it).
Writes go through a queue to a single thread, so the collection's write lock is never contended
inside this process, and a request is acknowledged only once its commit is on disk.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from pathlib import Path

from hsearch.engine import Collection, open_collection
from hsearch.errors import HsearchError
from hsearch.server.client import collection_name

class ShuttingDown(HsearchError):
    """A write arrived after the server began to stop (HTTP 503)."""


class ServedCollection:
    def __init__(self, folder: str | Path, name: str | None = None, **open_options):
        self.folder = Path(folder).expanduser().resolve()
        self.name = name or collection_name(self.folder)
        self.reader: Collection = open_collection(self.folder, **open_options)
        # the writer loads the document encoder at its first write: a read-only server never pays for it
        self.writer: Collection = open_collection(self.folder, **open_options)
        # One encode at a time per collection: the encoder objects (a tokenizer, a torch module or an ONNX
        # session) are shared by every request thread and not documented as safe to call concurrently.
        # A query's encode takes milliseconds; the rest of the query (stores, fusion) runs unlocked.
        self.encode_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._closing, self._closing_lock = False, threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name=f"hsearch-writer-{self.name}", daemon=True)
        self._thread.start()

    def warm(self) -> None:
        """Load the query encoder now and run one query through it, so the first request is not the slow one."""
        with self.encode_lock:
            encoder = self.reader.query_encoder
            if hasattr(encoder, "warm"):  # the whole tokenizer now, not on the eighth request (tokenizer.py)
                encoder.warm()
            encoder.encode_queries(["warm up"])

    def encode_queries(self, plan):
        """(plain, whole) encodings of the plan's query, as `Collection.run` takes them."""
        need = set(plan.signals) | set(plan.first_stage)
        flags = dict(dense="dense" in need, sparse="sparse" in need, colbert="colbert" in need)
        with self.encode_lock:
            plain, whole = self.reader.query_encoders(plan)
            encoded = plain.encode_queries([plan.query], **flags)[0]
            encoded_whole = whole.encode_queries([plan.query], **flags)[0] if whole is not None else None
        return encoded, encoded_whole

    # ---- writes -------------------------------------------------------------------------------
    def upsert(self, documents: list) -> dict:
        report = self._submit(lambda: self.writer.add(documents))
        return {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
                "chunks": report.chunks}

    def delete(self, ids: list[str]) -> int:
        return self._submit(lambda: self.writer.delete(ids))

    def _submit(self, job):
        done: Future = Future()
        with self._closing_lock:
            if self._closing:
                raise ShuttingDown("this server is shutting down; retry the write against the restarted server")
            self._jobs.put((job, done))
        return done.result()  # re-raises the job's error in the request's thread

    def _write_loop(self):
        while True:
            item = self._jobs.get()
            if item is None:  # close(): nothing can be queued behind it any more
                return
            job, done = item
            try:
                done.set_result(job())
            except BaseException as e:  # handed to the waiting request; the writer thread goes on
                done.set_exception(e)

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued writes, then stop the writer thread; later writes are refused."""
        with self._closing_lock:
            self._closing = True
            self._jobs.put(None)
        self._thread.join(timeout)
