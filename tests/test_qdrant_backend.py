"""The Qdrant backend, without a server: the same backend code against qdrant-client's local mode and
against qdrant-edge (Qdrant's Rust engine in-process) returns what the local engine returns on the
same documents, for every kind of plan (dense, sparse, fused, re-ranked, with BM25, filtered), after
deletes and updates too; and it fails with messages that say what to do.

A cluster is not started here: qdrant-client speaks the same API to a server as in local mode, and the
only cluster-specific settings (shard_number, replication_factor) are passed through unchanged;
deploy/qdrant-cluster.yml starts a real 3-node cluster for a manual run.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError, InputError
from hsearch.testing import FakeEncoder

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

# qdrant-client checks a server's version in the background; the unreachable-server test makes it warn
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")
WORDS = [f"w{i}" for i in range(300)]
N_DOCS = 2000


def fake_encoder():
    """Hashed words with jittered sparse weights: distinct scores everywhere. (A tiny random transformer
    gives near-equal dense vectors, and equal weights tie: ties at a top-k cut are broken by chunk id
    locally and by the engine's own order in Qdrant, which would test tie-breaking, not the backend.)"""
    return FakeEncoder(dim=24, colbert_dim=16, colbert_tokens=None, jitter=0.01, name="word-test")


@pytest.fixture(scope="module")
def word_encoder():
    with pytest.MonkeyPatch.context() as mp:  # every collection below loads this encoder as its model
        enc = fake_encoder()
        mp.setattr("hsearch.encode.load_encoder", lambda *a, **k: enc)
        yield enc


def _docs(n, seed=0, tag=""):
    rng = np.random.default_rng(seed)
    return [{"id": f"d{i}", "text": tag + " ".join(rng.choice(WORDS, int(rng.integers(4, 40)))),
             "path": f"{['docs', 'notes'][i % 2]}/{i}.txt", "lang": ["en", "de", "fr"][i % 3],
             "year": 2000 + i % 25, "flag": bool(i % 5 == 0)} for i in range(n)]


def _build(folder, **settings):
    from hsearch.engine import open_collection

    cfg = CollectionConfig(chunk_tokens=16, chunk_overlap=4, dense_index="flat", **settings)
    col = open_collection(folder, create=True, config=cfg)
    docs = _docs(N_DOCS)
    col.add(docs)
    col.delete([f"d{i}" for i in range(0, N_DOCS, 20)])  # tombstones, purged from Qdrant after the commit
    col.add([{**d, "text": "changed " + d["text"]} for d in docs[1:200:4]])  # updates: new chunks, old ones dead
    return col


@pytest.fixture(scope="module")
def cols(tmp_path_factory, word_encoder):
    root = tmp_path_factory.mktemp("qdrant-backend")
    return {
        "local": _build(root / "local", colbert_codec="float32"),
        "qdrant-local-mode": _build(root / "client", backend="qdrant", backend_url=":memory:"),
        "qdrant-edge": _build(root / "edge", backend="qdrant-edge"),
        "local-int8": _build(root / "local-int8"),
        "qdrant-edge-local-tokens": _build(root / "edge-int8", backend="qdrant-edge", qdrant_multivector=False),
    }


def assert_same(a, b, tol=2e-5):
    """Same documents in the same order, scores within float32 rounding (order inside a run of scores
    closer than `tol` is free)."""
    assert len(a) == len(b)
    theirs = {h.id: h for h in b}
    for x, y in zip(a, b):
        assert x.score == pytest.approx(y.score, abs=tol)
        if x.id in theirs:
            assert x.scores == pytest.approx(theirs[x.id].scores, abs=tol)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[j].score - a[j + 1].score < tol:
            j += 1
        assert {h.id for h in a[i:j + 1]} == {h.id for h in b[i:j + 1]}, (i, [h.id for h in a], [h.id for h in b])
        i = j + 1


QUERIES = [" ".join(np.random.default_rng(100 + i).choice(WORDS, 3 + i % 5)) for i in range(12)]
PLANS = [dict(mode="dense"), dict(mode="sparse"), dict(mode="dense+sparse"), dict(mode="dense+sparse", fusion="rrf"),
         dict(mode="all"), dict(mode="colbert"), dict(mode="dense+sparse+bm25"), dict(mode="sparse+colbert", depth=20),
         dict(mode="dense", k=50, depth=30)]
WHERE = [["lang=de"], ["year>=2020"], ["lang!=de", "year<2005"], ["flag=1"], ["path~notes/*"], ["id=d7"]]


@pytest.mark.parametrize("backend", ["qdrant-local-mode", "qdrant-edge"])
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_results_equal_local_engine(cols, backend, plan):
    queries = QUERIES if backend == "qdrant-edge" else QUERIES[:4]  # local mode is pure Python: slow
    for q in queries:
        expected = cols["local"].search(q, k=plan.get("k", 10), **{k: v for k, v in plan.items() if k != "k"})
        assert len(expected) >= min(plan.get("k", 10), 40)  # k chunks at most, grouped into documents
        assert_same(expected, cols[backend].search(q, k=plan.get("k", 10),
                                                    **{k: v for k, v in plan.items() if k != "k"}))


@pytest.mark.parametrize("backend", ["qdrant-local-mode", "qdrant-edge"])
@pytest.mark.parametrize("where", WHERE, ids=lambda w: "&".join(w))
def test_filters_map_to_payload_filters(cols, backend, where):
    for mode in ("dense+sparse", "all"):
        expected = cols["local"].search(QUERIES[0], mode=mode, k=10, where=where)
        assert expected
        assert_same(expected, cols[backend].search(QUERIES[0], mode=mode, k=10, where=where))


def test_local_token_codes_rerank_qdrant_candidates(cols):
    """--local-multivector: Qdrant retrieves and scores dense/sparse, hsearch's int8 codes re-rank."""
    for q in QUERIES:
        for mode in ("all", "colbert", "sparse+colbert"):
            assert_same(cols["local-int8"].search(q, mode=mode, k=10),
                        cols["qdrant-edge-local-tokens"].search(q, mode=mode, k=10))


def test_one_query_api_call_per_search(cols):
    col = cols["qdrant-edge"]
    remote = col.snapshot().sources[-1]
    calls = []
    real = remote.driver.query_batch
    remote.driver.query_batch = lambda searches: calls.append(len(searches)) or real(searches)
    try:
        col.search(QUERIES[0], mode="all")  # dense + sparse prefetched, re-scored by dense, sparse, colbert
        col.search(QUERIES[0], mode="dense+sparse+bm25")  # BM25's candidates travel as a has_id prefetch
    finally:
        remote.driver.query_batch = real
    assert calls == [3, 2]


def test_deleted_and_replaced_chunks_are_gone_from_qdrant(cols):
    for name in ("qdrant-edge", "qdrant-local-mode"):
        snap = cols[name].snapshot()
        assert snap.sources[-1].driver.count() == snap.n_chunks
        assert not snap.sources[-1].exclude  # the writer purged them: readers need no id exclusion


def test_interrupted_run_leaves_no_visible_points(tmp_path, word_encoder, monkeypatch):
    from hsearch.engine import open_collection
    from hsearch.storage.manifest import Manifest

    cfg = CollectionConfig(backend="qdrant-edge", commit_every=50)
    col = open_collection(tmp_path / "c", create=True, config=cfg)
    col.add(_docs(60))
    real, calls = Manifest.save, []

    def failing(self, folder):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(self, folder)
    monkeypatch.setattr(Manifest, "save", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        col.add(_docs(200, seed=1, tag="new "))  # the second commit's points are in Qdrant, not in the manifest
    monkeypatch.setattr(Manifest, "save", real)
    snap = open_collection(tmp_path / "c").snapshot()
    driver = snap.sources[-1].driver
    assert driver.count() > snap.n_chunks  # the uncommitted points exist, and stay invisible:
    every = np.arange(snap.manifest.next_chunk_id + 1000)
    ids, _ = snap.sources[-1].collect({"dense": word_encoder._one("w1").dense}, 10_000, {}, snap.scope(), np.empty(0))
    assert len(ids) == snap.n_chunks and set(ids.tolist()) == set(every[snap.live(every)].tolist())
    col.add(_docs(200, seed=1, tag="new "))  # the next writer removes them, then finishes
    snap = open_collection(tmp_path / "c").snapshot()
    assert snap.sources[-1].driver.count() == snap.n_chunks


# ----------------------------------------------------------------------------------------- errors


def test_unreachable_server_is_a_clear_error(tmp_path, word_encoder):
    from hsearch.engine import open_collection

    cfg = CollectionConfig(backend="qdrant", backend_url="http://127.0.0.1:9")
    col = open_collection(tmp_path / "c", create=True, config=cfg)
    with pytest.raises(CollectionError, match="cannot reach Qdrant at http://127.0.0.1:9"):
        col.add(_docs(3))


def test_missing_extra_names_the_install_command(tmp_path, word_encoder, monkeypatch):
    from hsearch.engine import open_collection

    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # import fails as if not installed
    with pytest.raises(InputError, match=r'pip install "hsearch\[qdrant\]"'):
        open_collection(tmp_path / "c", create=True, config=CollectionConfig(backend="qdrant-edge"))


def test_mismatched_vector_sizes_are_refused(tmp_path, word_encoder):
    from hsearch.backends.qdrant_drivers import open_driver
    from hsearch.engine import open_collection

    open_driver("qdrant-edge", str(tmp_path / "shard"), "x").create(dim=7, colbert_dim=16, shards=None, replication=None)
    cfg = CollectionConfig(backend="qdrant-edge", backend_url=str(tmp_path / "shard"))
    col = open_collection(tmp_path / "c", create=True, config=cfg)
    with pytest.raises(CollectionError, match="has dense vectors of size 7, this collection's model and settings need size 24"):
        col.add(_docs(3))


def test_foreign_points_are_not_adopted(tmp_path, word_encoder):
    from hsearch.engine import open_collection

    a = open_collection(tmp_path / "a", create=True, config=CollectionConfig(backend="qdrant", backend_url=":memory:",
                                                                             qdrant_collection="shared"))
    a.add(_docs(3))
    b = open_collection(tmp_path / "b", create=True, config=CollectionConfig(backend="qdrant", backend_url=":memory:",
                                                                             qdrant_collection="shared"))
    with pytest.raises(CollectionError, match="already holds .* points this hsearch collection did not write"):
        b.add(_docs(3))


@pytest.mark.parametrize("settings, message", [
    (dict(backend="qdrant-edge", qdrant_shards=3), "single shard"),
    (dict(backend="qdrant", backend_url="./x", qdrant_replication=2), "single shard"),
    (dict(backend="qdrant-edge", backend_url="http://localhost:6333"), "runs in-process"),
    (dict(backend_url="http://localhost:6333"), "need --backend qdrant"),
    (dict(backend="milvus"), "unknown backend"),
])
def test_bad_backend_settings(tmp_path, word_encoder, settings, message):
    from hsearch.engine import open_collection

    with pytest.raises(InputError, match=message):
        open_collection(tmp_path / "c", create=True, config=CollectionConfig(**settings))


def test_reopening_keeps_the_qdrant_collection_name(tmp_path, word_encoder):
    from hsearch.engine import open_collection

    cfg = CollectionConfig(backend="qdrant", backend_url="http://127.0.0.1:9")
    name = open_collection(tmp_path / "my col", create=True, config=cfg).config.qdrant_collection
    assert name.startswith("hsearch-my-col-")
    again = open_collection(tmp_path / "my col", create=True, config=cfg)  # as `hsearch index` re-runs
    assert again.config.qdrant_collection == name


def test_import_and_help_load_no_qdrant_binding():
    code = ("import sys, hsearch, hsearch.cli, hsearch.backends, hsearch.snapshot; "
            "print(any(m.startswith(('qdrant_client', 'qdrant_edge')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False"]


class TwoViewEncoder(FakeEncoder):
    """An encoder with a long-context method, as the engine sees one: its `passage_encoder` (the plain
    model) encodes passages, itself whole documents (dense vectors shifted, so the two views differ)."""

    max_tokens = 48

    def __init__(self):
        super().__init__(dim=24, colbert_dim=16, colbert_tokens=None, jitter=0.01, name="word-test")
        self.passage_encoder = fake_encoder()
        self.shift = np.random.default_rng(1).standard_normal(self.dim).astype(np.float32)

    def _one(self, text, dense=True, sparse=True, colbert=True):
        enc = super()._one(text, dense, sparse, colbert)
        if enc.dense is not None:
            v = enc.dense + 0.5 * self.shift
            enc.dense = (v / np.linalg.norm(v)).astype(np.float32)
        return enc


def test_whole_document_view_equals_local_engine(tmp_path):
    """A long-context collection on Qdrant: each chunk's view is in its payload and filters retrieval,
    so maxp, whole and both rank as the local engine does (both drivers)."""
    from hsearch.engine import open_collection

    enc = TwoViewEncoder()
    cols = {}
    for backend in ("local", "qdrant-edge", "qdrant"):
        cfg = CollectionConfig(chunk_tokens=16, chunk_overlap=4, dense_index="flat", long_context="test:48",
                               backend=backend, colbert_codec="float32",
                               backend_url=str(tmp_path / "qdrant-local") if backend == "qdrant" else None)
        cols[backend] = open_collection(tmp_path / backend, create=True, config=cfg, encoder=enc)
        cols[backend].add([d for d in _docs(150) if d["text"].count(" ") > 20])
    views = np.concatenate([s.views for s in cols["local"].snapshot().segments])
    assert (views == 1).sum() > (views == 2).sum() > 0
    for q in QUERIES[:4]:
        for doc_score in ("maxp", "whole", "both"):
            for mode in ("dense", "dense+sparse", "all", "dense+sparse+bm25"):
                a, b, c = (col.search(q, mode=mode, doc_score=doc_score, depth=20, k=10) for col in cols.values())
                assert a and len({h.id for h in a}) == len(a)
                assert_same(a, b)
                assert_same(a, c)
