"""An interrupted index run leaves the previous collection intact and queryable; the next run finishes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from hsearch.config import CollectionConfig
from hsearch.engine import open_collection


def _corpus(root, n, tag):
    root.mkdir(exist_ok=True)
    for i in range(n):
        (root / f"doc{i:03d}.txt").write_text(f"{tag} document number {i} about topic {i % 7} and more words.")


def test_exception_mid_run_keeps_previous_collection(tmp_path, tiny_bgem3, monkeypatch):
    root = tmp_path / "docs"
    _corpus(root, 10, "first")
    cfg = CollectionConfig(model=str(tiny_bgem3), commit_every=4)
    col = open_collection(tmp_path / "c", create=True, model=str(tiny_bgem3), config=cfg)
    col.index(root)
    before = [h.id for h in col.search("first document", mode="dense+sparse+bm25", k=20)]
    assert len(before) == 10

    _corpus(root, 30, "second")  # rewrites the 10 and adds 20
    import hsearch.backends.local as writer  # the local sink writes the segment stores

    calls = {"n": 0}
    real = writer.write_sparse

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(writer, "write_sparse", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        col.index(root)
    monkeypatch.setattr(writer, "write_sparse", real)
    # the first commit of the failed run landed; every document is still findable exactly once
    hits = open_collection(tmp_path / "c").search("document", mode="dense+sparse+bm25", k=50)
    found = {h.id for h in hits}
    assert len(found) == len(hits) and {f"doc{i:03d}.txt" for i in range(10)} <= found
    report = col.index(root)  # the next run finishes the work without redoing what committed
    assert report.added + report.updated + report.unchanged == 30 and report.unchanged >= 1
    assert len(col.search("second document", mode="bm25", k=50)) == 30
    assert col.info()["documents"] == 30


SCRIPT = """
import sys
from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
model, folder, root = sys.argv[1:]
col = open_collection(folder, create=True, model=model, config=CollectionConfig(model=model, commit_every=3))
col.index(root)
"""


def test_kill_9_mid_index_then_query_and_resume(tmp_path, tiny_bgem3):
    root = tmp_path / "docs"
    _corpus(root, 8, "old")
    folder = tmp_path / "c"
    cfg = CollectionConfig(model=str(tiny_bgem3), commit_every=3)
    col = open_collection(folder, create=True, model=str(tiny_bgem3), config=cfg)
    col.index(root)
    _corpus(root, 120, "new")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tiny_bgem3), str(folder), str(root)], env=env)
    start = open_collection(folder).info()["generation"]
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill once at least one new commit landed
        if open_collection(folder).info()["generation"] > start + 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    col = open_collection(folder)
    hits = col.search("document number", mode="all", k=200)
    assert 8 <= len(hits) <= 120 and len({h.id for h in hits}) == len(hits)
    assert len(col.search("number", mode="bm25", k=500)) == len(hits)  # BM25 sees the same snapshot
    report = col.index(root)
    assert report.commits > 0, "the run finished before the kill; nothing was interrupted"
    assert report.added + report.updated + report.unchanged == 120
    assert col.info()["documents"] == 120
    hits = col.search("new document", mode="bm25", k=500)
    assert sorted(h.id for h in hits) == [f"doc{i:03d}.txt" for i in range(120)]
    assert all(h.snippet.startswith("new") for h in hits)  # no replaced text beside its replacement


def test_run_killed_between_its_manifest_and_bm25_deletions_returns_no_deleted_chunk(tmp_path, tiny_bgem3, monkeypatch):
    """A commit that replaces documents saves its manifest, then deletes their old chunks from BM25. Killed in
    between, BM25 keeps them; a merge then drops them from the segment stores, whose masks stop looking them
    up. Neither the next writer's merges nor a reader of such a collection may return them (the kill -9 test
    above once found two old documents next to their replacements)."""
    import shutil

    from hsearch.index.bm25 import BM25Index

    folder = tmp_path / "c"
    col = open_collection(folder, create=True, model=str(tiny_bgem3))
    col.add([{"id": f"d{i}", "text": f"old words number {i}"} for i in range(4)])

    def killed(self, ids):
        raise RuntimeError("killed")

    monkeypatch.setattr(BM25Index, "delete", killed)
    with pytest.raises(RuntimeError, match="killed"):
        col.add([{"id": "d0", "text": "new words number 0"}, {"id": "d1", "text": "new words number 1"}])
    monkeypatch.undo()
    left = tmp_path / "bm25-as-the-kill-left-it"
    shutil.copytree(folder / "bm25", left)

    def found(query):
        hits = open_collection(folder).search(query, mode="bm25", k=50)
        return sorted(h.id for h in hits), {h.snippet.split()[0] for h in hits if h.id in ("d0", "d1")}

    assert found("words") == (["d0", "d1", "d2", "d3"], {"new"})  # before any merge: the masks look them up
    col.optimize()  # a writer opens (and deletes them from BM25), then merges every segment into one
    assert found("words") == (["d0", "d1", "d2", "d3"], {"new"})
    assert found("old") == (["d2", "d3"], set())

    shutil.rmtree(folder / "bm25")  # the merged collection with BM25 as the kill left it (a collection merged
    shutil.copytree(left, folder / "bm25")  # by a version that did not delete them again)
    assert found("words") == (["d0", "d1", "d2", "d3"], {"new"})
    assert found("old") == (["d2", "d3"], set())
    col.add([{"id": "d4", "text": "old words number 4"}])  # the next writer deletes them from BM25 for good
    assert BM25Index(folder / "bm25", "auto").purged() == open_collection(folder).snapshot().manifest.tombstones
    assert found("old") == (["d2", "d3", "d4"], set())


def test_commit_landing_while_a_write_starts_is_kept(tmp_path, tiny_bgem3, monkeypatch):
    """Two writers of one folder (a server's writer and `hsearch index`, say). The second commits while the
    first is loading its encoder, before it takes the lock: the first must read the manifest under the lock,
    or it takes the new segment for a leftover and removes it (the other's acknowledged documents lost)."""
    folder = tmp_path / "c"
    open_collection(folder, create=True, model=str(tiny_bgem3)).add([{"id": "a", "text": "first words"}])
    first, second = open_collection(folder), open_collection(folder)
    real = first._load

    def load_while_the_other_commits(purpose):
        second.add([{"id": "b", "text": "written by the other process meanwhile"}])
        return real(purpose)

    monkeypatch.setattr(first, "_load", load_while_the_other_commits)
    first.add([{"id": "c", "text": "written by the first"}])
    after = open_collection(folder)
    assert all(after.get(d) is not None for d in "abc")
    assert {h.id for h in after.search("written", mode="bm25", k=10)} == {"b", "c"}


def test_a_write_waits_for_another_writer(tmp_path, tiny_bgem3):
    """A write waits (up to `lock_wait` seconds) for another writer's lock, then goes on; lock_wait=0 refuses."""
    import threading

    folder = tmp_path / "c"
    holder = open_collection(folder, create=True, model=str(tiny_bgem3))
    holder.add([{"id": "a", "text": "first words"}])
    waiter = open_collection(folder)
    assert waiter.encoder is not None  # loaded now, so the timing below is the lock's
    locked, release = threading.Event(), threading.Event()

    def hold():
        def job(w):
            locked.set()
            release.wait(30)
            return w.sync([], "nothing", delete_missing=False)
        holder._write(job)

    t = threading.Thread(target=hold)
    t.start()
    assert locked.wait(30)
    waiter.lock_wait = 0
    with pytest.raises(Exception, match="another hsearch process is writing to .*wait for it to finish"):
        waiter.add([{"id": "b", "text": "refused at once"}])
    waiter.lock_wait = 30
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    waiter.add([{"id": "b", "text": "written once the other writer is done"}])
    t.join(30)
    assert time.monotonic() - start >= 0.25 and waiter.get("b") is not None


def test_a_write_commits_while_another_encodes(tmp_path):
    """A writer lets go of the lock while its encoder runs (hsearch/writer.py), so a second writer (a server's
    upsert during an `hsearch index` run) commits meanwhile instead of waiting for the whole encoding; the
    first then commits beside it, deciding what it replaces from what is live by then: every document once."""
    import threading

    from hsearch.testing import FakeEncoder

    encoding, finish = threading.Event(), threading.Event()

    class SlowEncoder(FakeEncoder):
        def encode_documents(self, texts, **kw):
            if any(t.startswith("slow") for t in texts):
                encoding.set()
                assert finish.wait(30)
            return super().encode_documents(texts, **kw)

    enc = SlowEncoder(dim=16, colbert_dim=8, colbert_tokens=None, jitter=0.01, name="lock-test")
    folder = tmp_path / "c"
    first = open_collection(folder, create=True, encoder=enc,
                            config=CollectionConfig(model=enc.spec.name, chunk_tokens=16, chunk_overlap=4))
    first.add([{"id": "base", "text": "base words"}])
    second = open_collection(folder, encoder=enc)
    second.lock_wait = 0  # refused at once if the first still held the lock
    errors = []

    def slow_write():
        try:
            first.add([{"id": "s", "text": "slow cat"}, {"id": "both", "text": "slow version of both"}])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=slow_write)
    t.start()
    assert encoding.wait(30)
    second.add([{"id": "f", "text": "fast dog"}, {"id": "both", "text": "fast version of both"}])
    second.delete(["base"])
    finish.set()
    t.join(60)
    assert not errors, errors
    after = open_collection(folder, encoder=enc)
    assert after.ids() == ["both", "f", "s"]
    assert after.info()["documents"] == 3 and after.get("base") is None
    assert after.get("both")["text"].startswith("slow")  # the first committed last: its version replaced the other
    hits = after.search("version both", mode="bm25", k=10)
    assert [h.id for h in hits].count("both") == 1
