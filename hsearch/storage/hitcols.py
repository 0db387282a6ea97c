"""What a hit shows of its chunk (document id, path, title, metadata, chunk number and snippet), kept
beside the segment's vectors so that a query reads its k hits without SQLite.

Reading ten hits' fields from docs.sqlite (a join per query) and cutting their snippets cost a query
more than anything but the stores' own searches; RESULTS.md, "Query path, session 15", times the change.
They are written once with the segment and never change, like every segment file, so they are
memory-mapped and a reader needs no lock: a merge writes new files and only unlinks the old ones, which
leaves a mapping that an older snapshot holds readable.

Layout, in the folder `hits/` of a segment (numpy and raw bytes: Arrow would serve, but `import pyarrow.ipc`
costs each query process about 90 ms, `python -X importtime`, a fifth of a CLI query's wall time):
- `chunks.npy`: int64 (n, 2), per chunk slot (id - segment start): its document's index in this
  segment's document list (-1 for a slot a merge dropped) and its chunk number;
- `strings.utf8`: every string, UTF-8, back to back: first the n snippets, then 4 per document
  (id, path, title, metadata as JSON);
- `offsets.npy`: int64, n + 4 * documents + 1: where each string starts (the last: where the bytes end).
"""
from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from hsearch.storage import arrays

FOLDER = "hits"
SNIPPET_CHARS = 240
_DOC_FIELDS = 4  # id, path, title, metadata


def snippet(text: str) -> str:
    """The text with its whitespace collapsed, cut at a word before SNIPPET_CHARS. Only a head of the text is
    collapsed (long chunks made this a tenth of a query's time when it ran per query): once the head's whole
    words give more than SNIPPET_CHARS characters, they are the collapsed text's own start, and the cut falls
    inside them. The first head is just over SNIPPET_CHARS (prose collapses little), doubled until its words
    are enough."""
    n = SNIPPET_CHARS + 32
    while n < len(text):
        words = text[:n].split()
        if not text[n].isspace() and not text[n - 1].isspace():
            words = words[:-1]  # the head ends inside a word
        head = " ".join(words)
        if len(head) > SNIPPET_CHARS:
            return head[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
        n *= 2
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."


def write(folder: Path, docs: list[tuple[str, str, str, str]], chunk_doc, chunk_no, snippets: list[str]) -> None:
    """Write the columns of one segment into `folder`/hits: `docs` as (id, path, title, metadata JSON), and
    per chunk slot its index into `docs` (-1: dropped, its snippet then empty), its number and its snippet."""
    out = folder / FOLDER
    out.mkdir()
    encoded = [s.encode() for s in snippets]
    encoded += [(f or "").encode() for d in docs for f in d]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    (out / "strings.utf8").write_bytes(b"".join(encoded))
    np.save(out / "offsets.npy", offsets)
    np.save(out / "chunks.npy", np.stack([np.asarray(chunk_doc, np.int64), np.asarray(chunk_no, np.int64)], axis=1)
            .reshape(-1, 2))


class HitColumns:
    """One segment's columns, memory-mapped; `fields(slots)` gives the hits' fields."""

    def __init__(self, folder: Path):
        folder = folder / FOLDER
        # plain ndarray views of the maps: indexing an np.memmap pays for the subclass on every call
        self.chunks = np.asarray(arrays.load(folder / "chunks.npy", mmap_mode="r"))
        self.offsets = np.asarray(arrays.load(folder / "offsets.npy", mmap_mode="r"))
        self.n = len(self.chunks)
        if len(self.offsets) < self.n + 1 or (len(self.offsets) - 1 - self.n) % _DOC_FIELDS:
            raise ValueError(f"{folder}: {len(self.offsets)} offsets do not fit {self.n} chunks")
        # The same maps as flat views of Python ints: a query reads a few numbers per hit, and indexing a memoryview
        # costs a fraction of the NumPy gathers it replaced (one per step, each of a few microseconds).
        self._chunk_at, self._offset_at = (memoryview(np.ascontiguousarray(a, np.int64)).cast("B").cast("q")
                                           for a in (self.chunks, self.offsets))
        with open(folder / "strings.utf8", "rb") as f:
            size = f.seek(0, 2)
            if size != int(self.offsets[-1]):
                raise ValueError(f"{folder}/strings.utf8 holds {size} bytes, its offsets end at {int(self.offsets[-1])}")
            # slicing the map gives bytes (decoding those is faster than decoding a memoryview's slices)
            self._strings = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def _str(self, i: int) -> str:
        return self._strings[self.offsets[i]:self.offsets[i + 1]].decode()

    def fields(self, slots) -> list[tuple]:
        """The fields of the chunks at `slots` (ints: ids less the segment's start) as `Snapshot.hit_fields` gives
        them: (doc_id, snippet, path, title, chunk_no, metadata), a missing path or title as None."""
        chunk, at, text, docs = self._chunk_at, self._offset_at, self._strings, self.n
        out = []
        for slot in slots:
            d = chunk[2 * slot]
            if d < 0:
                raise KeyError(f"chunk slot {slot} was dropped by a merge")
            j = docs + _DOC_FIELDS * d  # a document's 4 strings abut
            i, p, t, m, end = at[j], at[j + 1], at[j + 2], at[j + 3], at[j + 4]
            out.append((text[i:p].decode(), text[at[slot]:at[slot + 1]].decode(), text[p:t].decode() or None,
                        text[t:m].decode() or None, chunk[2 * slot + 1],
                        json.loads(text[m:end]) if end - m > 2 else {}))  # "" or "{}": none
        return out

    def rows(self, keep: np.ndarray):
        """(docs, chunk_doc, chunk_no, snippets) of this segment with the chunk slots not in `keep` (a mask)
        dropped and the documents left without a chunk gone: what `write` takes, for a merge."""
        doc_of, no = np.where(keep, self.chunks[:, 0], -1), self.chunks[:, 1]
        used = np.unique(doc_of[doc_of >= 0])
        new_index = np.full((len(self.offsets) - 1 - self.n) // _DOC_FIELDS, -1, np.int64)  # per document
        new_index[used] = np.arange(len(used))
        docs = [tuple(self._str(self.n + _DOC_FIELDS * int(d) + f) for f in range(_DOC_FIELDS)) for d in used]
        chunk_doc, live = np.full(len(doc_of), -1, np.int64), doc_of >= 0
        chunk_doc[live] = new_index[doc_of[live]]
        snippets = [self._str(i) if k else "" for i, k in enumerate(keep.tolist())]
        return docs, chunk_doc, no, snippets


def rows_from_records(records, n: int, keep: np.ndarray):
    """`HitColumns.rows` for a segment without columns, from its docs.sqlite records (DocStore.chunk_records:
    slot, chunk number, text, document row, id, path, title, metadata); a slot with no record (its text
    purged) or not in `keep` is dropped."""
    docs, index = [], {}
    chunk_doc, chunk_no, snippets = np.full(n, -1, np.int64), np.zeros(n, np.int64), [""] * n
    for slot, no, text, row, *fields in records:
        if not keep[slot]:
            continue
        if row not in index:
            index[row] = len(docs)
            docs.append(tuple(fields))
        chunk_doc[slot], chunk_no[slot], snippets[slot] = index[row], no, snippet(text)
    return docs, chunk_doc, chunk_no, snippets
