"""Segment merging (hsearch/merge.py): the policy, results unchanged by a merge, deleted bytes gone,
kill -9 during a merge, and readers querying while a writer commits and merges."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hsearch import merge
from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
from hsearch.storage.manifest import Segment
from hsearch.testing import FakeEncoder

WORDS = ("cat dog bird fish sleep run swim fly river mountain tree stone cloud rain sun moon star "
         "bread milk water tea coffee wine book page word song dance play game ball city road").split()
MODES = ("dense", "sparse", "dense+sparse", "bm25", "dense+sparse+bm25", "all")


def _enc():
    return FakeEncoder(dim=24, colbert_dim=16, colbert_tokens=None, jitter=0.01, name="merge-test")


def _docs(lo, hi, tag="", seed=0):
    rng = np.random.default_rng(seed + lo)
    return [{"id": f"d{i}", "text": f"{tag} " + " ".join(rng.choice(WORDS, int(rng.integers(5, 30)))),
             "year": 2000 + i % 20} for i in range(lo, hi)]


def _build(folder, enc, batches=12, per=8, codec="int8"):
    cfg = CollectionConfig(model=enc.spec.name, chunk_tokens=16, chunk_overlap=4, dense_index="flat",
                           colbert_codec=codec)
    col = open_collection(folder, create=True, encoder=enc, config=cfg)
    for b in range(batches):  # one commit each
        col.add(_docs(b * per, (b + 1) * per))
    return col


def _results(col, queries, modes=MODES):
    return {(m, q): [(h.id, h.score, h.chunk) for h in col.search(q, m, k=15)] for m in modes for q in queries}


def _same(a, b):
    """Equal hits and scores; MaxSim (`all`) within float32 rounding (its BLAS product sums in an order
    that depends on where a document sits in the batch, so a merge may move its last bit)."""
    for key in a:
        ids_a, ids_b = [x[:1] + x[2:] for x in a[key]], [x[:1] + x[2:] for x in b[key]]
        sa, sb = np.array([x[1] for x in a[key]]), np.array([x[1] for x in b[key]])
        if key[0] == "all":
            assert len(ids_a) == len(ids_b) and np.allclose(sa, sb, rtol=1e-6, atol=1e-7), key
            assert sorted(ids_a) == sorted(ids_b), key
        else:
            assert ids_a == ids_b and (sa == sb).all(), key


QUERIES = ["cat sleep river", "coffee book", "dance song game ball", "moon", "milk water tea"]


def test_policy_merges_ten_adjacent_segments_of_one_level():
    def segs(sizes):
        out, start = [], 0
        for i, n in enumerate(sizes):
            out.append(Segment(f"s{i}", start, start + n))
            start += n
        return out

    none = np.empty(0, np.int64)
    assert merge.plan_merge(segs([100] * 9), none) is None
    assert merge.plan_merge(segs([100] * 12), none) == (0, 10)
    # a big segment splits the run of small ones: only 10 adjacent ones on one level merge
    assert merge.plan_merge(segs([100] * 5 + [50_000] + [100] * 5), none) is None
    assert merge.plan_merge(segs([50_000] + [100] * 10), none) == (1, 11)
    assert merge.plan_merge(segs([20_000] * 10), none) == (0, 10)  # level 1 merges too
    assert [merge.level(n) for n in (0, 9_999, 10_000, 99_999, 100_000)] == [0, 0, 1, 1, 2]
    # a segment with a third of its chunks deleted is rewritten alone
    s = segs([100, 100, 100])
    assert merge.plan_merge(s, np.arange(100, 130)) == (1, 2)
    assert merge.plan_merge(s, np.arange(100, 120)) is None
    s[1].dropped = 30  # ... and once they are dropped, it is not rewritten again
    assert merge.plan_merge(s, np.arange(100, 130)) is None


@pytest.mark.parametrize("codec", ["int8", "float16"])
def test_merging_changes_no_result_and_drops_deleted_chunks(tmp_path, codec):
    enc = _enc()
    col = _build(tmp_path / "c", enc, codec=codec)
    # the policy merged the first 10 commits into one as the writes went
    assert col.info()["segments"] == 3
    col.add(_docs(3, 6, tag="rewritten"))  # updates: their old chunks are tombstoned
    col.delete([f"d{i}" for i in range(40, 60)])
    # BM25's statistics lose the deleted documents in optimize, so its scores move (the next test)
    modes = [m for m in MODES if "bm25" not in m]
    expected = _results(col, QUERIES + ["rewritten"], modes)
    before = col.info()
    report = col.optimize()
    after = col.info()
    assert report["segments"] == [before["segments"], 1] and after["segments"] == 1
    assert after["documents"] == before["documents"] == 96 - 20 and after["chunks"] == before["chunks"]
    _same(expected, _results(col, QUERIES + ["rewritten"], modes))
    _same(expected, _results(open_collection(tmp_path / "c", encoder=enc), QUERIES + ["rewritten"], modes))
    # deleted chunks are gone from every store, not only hidden
    seg = col.snapshot().segments[0]
    for store in seg.stores.values():
        assert len(store) == after["chunks"]
    assert after["bytes"]["segments"] < before["bytes"]["segments"]
    assert col.get("d41") is None and col.get("d3")["text"].startswith("rewritten")
    # the next write and a second optimize work on the merged segment
    col.add(_docs(200, 205))
    assert col.optimize()["segments"] == [2, 1] and col.info()["documents"] == 96 - 20 + 5


def test_optimize_leaves_bm25_as_if_the_deleted_documents_never_were(tmp_path):
    enc = _enc()
    col = _build(tmp_path / "c", enc, batches=4)  # 4 commits: 4 tantivy segments
    col.add(_docs(3, 6, tag="rewritten"))  # updates
    col.delete([f"d{i}" for i in range(10, 20)])
    fresh = open_collection(tmp_path / "f", create=True, encoder=enc, config=col.config)  # the live documents alone
    written = [d for b in range(4) for d in _docs(b * 8, (b + 1) * 8)]  # as _build wrote them
    fresh.add([d for d in written if int(d["id"][1:]) not in range(3, 6) and int(d["id"][1:]) not in range(10, 20)]
              + _docs(3, 6, tag="rewritten"))
    every = lambda c: {q: sorted((h.id, h.chunk, h.score) for h in c.search(q, "bm25", k=100))
                       for q in QUERIES + ["rewritten"]}
    expected = every(fresh)
    assert every(col) != expected  # the deleted documents still count in BM25's statistics
    assert col.snapshot().bm25.searcher().num_segments > 1
    col.optimize()
    assert col.snapshot().bm25.searcher().num_segments == 1
    assert every(col) == expected == every(open_collection(tmp_path / "c", encoder=enc))
    assert col.snapshot().bm25.compacted()
    col.add(_docs(100, 102))  # a write adds a tantivy segment: the next optimize compacts again
    assert not col.snapshot().bm25.compacted()
    col.optimize()
    assert col.snapshot().bm25.compacted() and col.snapshot().bm25.searcher().num_segments == 1


def test_optimize_removes_deleted_texts_from_the_document_store(tmp_path):
    enc = _enc()
    col = _build(tmp_path / "c", enc, batches=3)
    col.add([{"id": "secret", "text": "zyzzyva unforgettable marker words"}])
    col.delete(["secret"])
    raw = lambda: b"".join(p.read_bytes() for p in (tmp_path / "c").glob("docs.sqlite*"))
    assert b"zyzzyva" in raw()
    col.optimize()
    assert b"zyzzyva" not in raw()
    assert col.search("zyzzyva", "bm25") == [] and col.info()["documents"] == 24


SCRIPT = """
import sys, time
import hsearch.backends.local as local
import hsearch.merge as merge
import hsearch.index.bm25 as bm25
from hsearch.engine import open_collection
from hsearch.testing import FakeEncoder
folder, where, flag = sys.argv[1:]
def stall(real):
    def f(*a, **k):
        out = real(*a, **k)
        open(flag, "w").close()
        time.sleep(60)
        return out
    return f
if where == "writing":      # the merged segment half written (sparse done, colbert not yet)
    merge.merge_sparse = stall(merge.merge_sparse)
elif where == "committed":  # the manifest committed, the replaced folders not yet removed
    local.LocalSink.commit = stall(local.LocalSink.commit)
else:                       # BM25 being compacted: every chunk deleted and added again, not yet committed
    bm25.BM25Index.add = stall(bm25.BM25Index.add)
enc = FakeEncoder(dim=24, colbert_dim=16, colbert_tokens=None, jitter=0.01, name="merge-test")
open_collection(folder, encoder=enc).optimize()
"""


@pytest.mark.parametrize("where", ["writing", "committed", "compacting"])
def test_kill_9_during_a_merge_loses_nothing(tmp_path, where):
    enc = _enc()
    col = _build(tmp_path / "c", enc, batches=4)
    col.delete(["d1", "d2"])
    expected = _results(col, QUERIES)
    flag = tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "c"), where, str(flag)], env=env)
    deadline = time.time() + 120
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the merge never reached the point to kill it at"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    col = open_collection(tmp_path / "c", encoder=enc)
    assert col.info()["segments"] == (4 if where == "writing" else 1)
    _same(expected, _results(col, QUERIES))
    col.add(_docs(100, 104))  # the next writer removes what the killed one left, then works
    assert sorted(p.name for p in (tmp_path / "c" / "segments").iterdir()) == \
        sorted(s.name for s in col.snapshot().manifest.segments)
    col.optimize()
    assert col.info()["segments"] == 1 and col.info()["documents"] == 32 - 2 + 4


def test_readers_query_while_a_writer_commits_and_merges(tmp_path):
    enc = _enc()
    # every module of the write and merge paths imported before the threads start: CPython 3.11 can raise
    # a spurious "AST constructor recursion depth mismatch" in one thread while another imports (gh-106905)
    warm = _build(tmp_path / "warm", enc, batches=2)
    warm.delete(["d1"])
    warm.optimize()
    folder = tmp_path / "c"
    _build(folder, enc, batches=2)
    reader = open_collection(folder, encoder=enc)  # one collection shared by the reading threads
    stop, errors, seen = threading.Event(), [], []

    def read():
        while not stop.is_set():
            try:
                for mode in ("dense+sparse", "all", "bm25"):
                    hits = reader.search("cat river coffee", mode, k=50)
                    ids = [h.id for h in hits]
                    assert len(ids) == len(set(ids)), ids
                    seen.append(len(ids))
            except Exception as e:  # noqa: BLE001 - any failure is the test's finding
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    writer = open_collection(folder, encoder=enc)
    for b in range(2, 24):  # 22 commits: the policy merges twice
        writer.add(_docs(b * 8, (b + 1) * 8))
        if b % 5 == 0:
            writer.delete([f"d{b * 8}"])
    writer.optimize()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(seen) > 20
    final = open_collection(folder, encoder=enc)
    assert final.info()["segments"] == 1 and final.info()["documents"] == 24 * 8 - 4
    assert {h.id for h in reader.search("cat river coffee", "dense+sparse", k=500)} == \
        {h.id for h in final.search("cat river coffee", "dense+sparse", k=500)}
