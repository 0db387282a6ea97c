"""Segment merging: adjacent segments rewritten into one, deleted chunks dropped from every store.

Every commit adds a segment, and every segment costs each query a search and a merge of top-k lists,
so segments are merged as they pile up (after Lucene's LogMergePolicy). Only *adjacent* segments are
merged, so a segment stays one range of chunk ids (the snapshot maps an id to its segment by range).
A segment's level is the order of magnitude of its live chunks over `FLOOR`; `FACTOR` adjacent
segments on one level merge into one on the next, so a chunk is rewritten about log_FACTOR(n) times
over a collection's life. A segment whose deleted share reaches `EXPUNGE` is rewritten alone.
`hsearch optimize` merges every segment into one and drops every deleted chunk.

A merge is a commit like any other (hsearch/writer.py): the new segment is written under a temporary
name, fsynced and renamed, then the manifest is replaced; the replaced folders are removed only
after that. A run killed anywhere leaves the previous manifest and its segments; the next writer
removes the leftovers. Readers keep the snapshot they opened (its files stay readable while they hold
them open; a snapshot being opened during the switch is opened again, see engine.Collection.snapshot).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsearch.index.dense import merge_dense
from hsearch.index.multivector import merge_multivector
from hsearch.index.sparse import merge_sparse
from hsearch.snapshot import SegmentReaders
from hsearch.storage import hitcols
from hsearch.storage.manifest import Segment
from hsearch.types import PASSAGE, WHOLE

FACTOR = 10      # segments per level before they merge
FLOOR = 1_000    # live chunks below which every segment is on level 0
EXPUNGE = 0.3    # deleted share that has a segment rewritten on its own


def level(live: int) -> int:
    """0 below FLOOR * FACTOR live chunks, 1 below FLOOR * FACTOR**2, ..."""
    lvl, cap = 0, FLOOR * FACTOR
    while live >= cap:
        lvl, cap = lvl + 1, cap * FACTOR
    return lvl


def dead_in(segment: Segment, dead_chunks: np.ndarray) -> int:
    """Deleted chunks still stored in `segment` (a merge already dropped `segment.dropped` of them)."""
    lo, hi = np.searchsorted(dead_chunks, [segment.start, segment.end])
    return int(hi - lo) - segment.dropped


def lacks_hit_columns(folder: Path, segment: Segment) -> bool:
    """Whether `segment` (a folder under `folder`) was written before hit columns (`hsearch optimize` adds them)."""
    return not (folder / segment.name / hitcols.FOLDER).exists()


def plan_merge(segments: list[Segment], dead_chunks: np.ndarray) -> tuple[int, int] | None:
    """The next merge the policy wants, as a slice [i, j) of `segments`, or None."""
    stored = [s.end - s.start - s.dropped for s in segments]
    dead = [dead_in(s, dead_chunks) for s in segments]
    levels = [level(n - d) for n, d in zip(stored, dead)]
    i = 0
    while i < len(levels):
        j = i
        while j < len(levels) and levels[j] == levels[i]:
            j += 1
        if j - i >= FACTOR:
            return i, i + FACTOR
        i = j
    for i, (n, d) in enumerate(zip(stored, dead)):
        if n and d / n >= EXPUNGE:
            return i, i + 1
    return None


def write_merged(folder: Path, segments: list[Segment], dead_chunks: np.ndarray, config, out: Path,
                 name: str, hit_records) -> Segment:
    """Write the merge of adjacent `segments` (folders under `folder`) into `out`; returns the Segment
    the manifest will list once the caller has renamed `out` to `name`. `hit_records(start, end)`
    (DocStore.chunk_records) gives the hit fields of segments written before hit columns, so the merged
    one has them."""
    readers = [SegmentReaders(folder / s.name, s.name, s.start, s.end) for s in segments]
    start, end = segments[0].start, segments[-1].end

    def keeps(stores):
        return [~np.isin(np.asarray(st.ids), dead_chunks) for st in stores]

    writers = {"dense": lambda rs, o: merge_dense(o, rs, keeps(rs), config.dense_index),
               "sparse": lambda rs, o: merge_sparse(o, rs, keeps(rs)),
               "colbert": lambda rs, o: merge_multivector(o, rs, keeps(rs), config.colbert_codec)}
    for signal, write in writers.items():
        stores = [r.stores[signal] for r in readers if signal in r.stores]
        if stores:
            write(stores, out / signal)
    # per-chunk arrays are indexed by id - start: a dropped chunk keeps its (never read) slot
    doc_rows = np.full(end - start, -1, np.int64)
    views = np.zeros(end - start, np.uint8) if any(r.views is not None for r in readers) else None
    for r in readers:
        doc_rows[r.start - start:r.end - start] = r.doc_rows
        if views is not None:
            views[r.start - start:r.end - start] = r.views if r.views is not None else PASSAGE | WHOLE
    np.save(out / "doc_rows.npy", doc_rows)
    if views is not None:
        np.save(out / "views.npy", views)
    docs, chunk_doc, chunk_no, snippets = [], [], [], []
    for r in readers:
        keep = ~np.isin(np.arange(r.start, r.end, dtype=np.int64), dead_chunks)
        if r.hits is not None:
            d, c, n, snip = r.hits.rows(keep)
        else:  # a segment written before hit columns: they are made from its docs.sqlite rows
            d, c, n, snip = hitcols.rows_from_records(hit_records(r.start, r.end), r.end - r.start, keep)
        chunk_doc.append(np.where(c >= 0, c + len(docs), -1))
        docs += d
        chunk_no.append(n)
        snippets += snip
    hitcols.write(out, docs, np.concatenate(chunk_doc), np.concatenate(chunk_no), snippets)
    dropped = sum(s.dropped for s in segments) + sum(dead_in(s, dead_chunks) for s in segments)
    return Segment(name=name, start=start, end=end, parts=[n for s in segments for n in s.doc_segments],
                   dropped=dropped)
