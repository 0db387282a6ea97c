"""End-to-end behaviour of a collection on a tiny random model."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
from hsearch.errors import CollectionError, InputError
from hsearch.ingest.loaders import LoadStats
from hsearch.testing import FakeEncoder

MODES = ["dense", "sparse", "colbert", "bm25", "dense+sparse", "dense+colbert", "sparse+bm25", "all",
         "dense+sparse+colbert+bm25"]


def ids(hits):
    return [h.id for h in hits]


def test_index_counts_awkward_files(tmp_path, tiny_bgem3, corpus):
    col = open_collection(tmp_path / "c", create=True, model=str(tiny_bgem3))
    stats = LoadStats()
    report = col.index(corpus, stats=stats)
    assert report.added == 6  # a, b, c, paris, berlin, latin1
    assert stats.skipped_binary == 1 and stats.skipped_empty == 1 and stats.decode_errors == 1
    assert col.info()["documents"] == 6


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_returns_each_document_at_most_once(collection, mode):
    hits = collection.search("dog park", mode=mode, k=10)
    assert hits, mode
    assert len(ids(hits)) == len(set(ids(hits)))
    assert all(set(h.scores) == set(collection.plan("x", mode).signals) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_finds_exact_term_and_ids_are_paths_or_corpus_ids(collection):
    hits = collection.search("qubits", mode="bm25")
    assert hits[0].id == "c.html" and "Quantum" in hits[0].snippet and "hidden" not in hits[0].snippet
    assert {"a.txt", "sub/b.md", "paris", "berlin"} <= set(ids(collection.search("the", mode="dense", k=10)))


def test_a_bm25_query_runs_no_model(tmp_path):
    enc = FakeEncoder(dim=16, colbert_dim=8, name="bm25-no-model")
    col = open_collection(tmp_path / "c", create=True, encoder=enc, config=CollectionConfig(model=enc.spec.name))
    col.add([{"id": "a", "text": "the quick brown fox"}, {"id": "b", "text": "a lazy dog sleeps"}])
    calls = []
    real = enc.encode_queries
    enc.encode_queries = lambda *a, **k: calls.append(k) or real(*a, **k)
    assert ids(col.search("lazy dog", mode="bm25")) == ["b"] and calls == []
    assert ids(col.search("lazy dog", mode="dense+bm25", k=1)) == ["b"]
    assert calls == [{"dense": True, "sparse": False, "colbert": False}]


def test_k_larger_than_collection(collection):
    assert len(collection.search("anything", mode="dense", k=100)) == 6


def test_where_filters_before_top_k(collection):
    hits = collection.search("capital", mode="dense+sparse", where=["lang=de"], k=5)
    assert ids(hits) == ["berlin"]
    assert ids(collection.search("capital", mode="dense", where=["year>2019"], k=5)) == ["paris"]
    assert set(ids(collection.search("x", mode="dense", where=["path~sub/*"], k=5))) == {"sub/b.md"}
    assert collection.search("capital", mode="bm25", where=["lang=fr"]) == []


def test_reindex_only_changes(collection, corpus):
    assert collection.index(corpus).unchanged == 6
    (corpus / "a.txt").write_text("Zebras graze on the savanna.")
    (corpus / "sub" / "b.md").unlink()
    report = collection.index(corpus)
    assert (report.updated, report.deleted, report.unchanged, report.chunks) == (1, 1, 4, 1)
    assert "sub/b.md" not in ids(collection.search("cats", mode="dense", k=10))
    assert ids(collection.search("zebras savanna", mode="bm25"))[0] == "a.txt"
    assert collection.search("dog morning", mode="bm25") == []  # the old text is gone everywhere
    assert collection.info()["documents"] == 5


def test_add_and_delete_api(collection):
    collection.add([{"id": "n1", "text": "Volcanoes erupt molten lava.", "topic": "geo"}])
    assert ids(collection.search("volcanoes lava", mode="bm25"))[0] == "n1"
    assert collection.search("lava", mode="dense", where=["topic=geo"])[0].metadata == {"topic": "geo"}
    assert collection.delete(["n1", "nope"]) == 1
    assert "n1" not in ids(collection.search("volcanoes lava", mode="dense+sparse+bm25", k=10))
    with pytest.raises(InputError):
        collection.add([{"id": "x", "text": "  "}])


def test_plans_follow_bge_m3_protocol(collection):
    p = collection.plan("q", "colbert")
    assert p.first_stage == ("dense",) and p.depth == 200 and p.signals == ("colbert",)
    p = collection.plan("q", "dense+sparse", depth=1000)
    assert p.first_stage == ("dense", "sparse") and p.depth == 1000 and p.normalize == "none"
    assert collection.plan("q", "all").signals == ("dense", "sparse", "colbert")
    assert collection.plan("q", "dense+bm25").normalize == "minmax"
    assert "reciprocal rank fusion" in collection.plan("q", "dense+sparse", fusion="rrf").describe()


@pytest.mark.parametrize("bad", [dict(mode="dnse"), dict(mode=""), dict(fusion="max"), dict(k=0),
                                 dict(weights="dense=x"), dict(where=["=3"])])
def test_bad_query_options_are_clear_errors(collection, bad):
    kw = {"mode": "dense", **bad}
    with pytest.raises(InputError):
        collection.search("dogs", **kw)
    with pytest.raises(InputError, match="empty query"):
        collection.search("  ", mode="dense")


def test_other_model_is_refused(collection, tmp_path):
    from tiny_model import build_tiny_bgem3

    other = build_tiny_bgem3(tmp_path / "other", seed=1, hidden=48)
    with pytest.raises(CollectionError, match="was built with model"):
        open_collection(collection.folder, model=str(other))


def test_other_settings_are_refused(collection):
    with pytest.raises(CollectionError, match="other settings"):
        open_collection(collection.folder, config=CollectionConfig(model="x", chunk_overlap=5))


def test_missing_and_corrupt_collections(tmp_path, collection):
    with pytest.raises(CollectionError, match="hsearch index"):
        open_collection(tmp_path / "nothing")
    (collection.folder / "manifest.json").write_text("{not json")
    with pytest.raises(CollectionError, match="corrupted"):
        open_collection(collection.folder)


def test_empty_corpus_is_an_error(tmp_path, tiny_bgem3):
    (tmp_path / "empty").mkdir()
    col = open_collection(tmp_path / "c", create=True, model=str(tiny_bgem3))
    with pytest.raises(InputError, match="no documents"):
        col.index(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        col.index(tmp_path / "missing")


def test_long_documents_are_chunked_and_best_chunk_is_the_snippet(tmp_path, tiny_bgem3):
    root = tmp_path / "long"
    root.mkdir()
    filler = "Sparse lexical weights and dense vectors complement each other. " * 40
    (root / "long.txt").write_text(filler + "The mitochondria is the powerhouse of the cell. " + filler)
    (root / "short.txt").write_text("Cats sleep.")
    col = open_collection(tmp_path / "c", create=True, model=str(tiny_bgem3),
                          config=CollectionConfig(model=str(tiny_bgem3), chunk_tokens=64, chunk_overlap=8))
    report = col.index(root)
    assert report.chunks > 10
    hit = col.search("mitochondria powerhouse", mode="bm25", k=1)[0]
    assert hit.id == "long.txt" and hit.chunk > 0 and "mitochondria" in hit.snippet


SEGMENT_DOCS = [{"id": f"d{i}", "text": text} for i, text in enumerate([
    "The capital city of France is Paris.", "Berlin is a large city in Germany.", "A dog runs in the park.",
    "Cats sleep most of the day.", "Quantum computers use qubits.", "A council met in that capital city.",
    "Rivers flow through the old city.", "A capital letter starts a sentence.", "Glaciers carve deep valleys.",
    "The park by the river is green.", "Volcanoes erupt near the coast city.", "Bees make honey in summer."])]


def test_segments_accumulate_and_stay_consistent(tmp_path):
    """Six segments answer exactly as one: same documents, same order, same scores. The word encoder's
    dense and multi-vector scores are distinct (checked), so a segment dropped or mis-offset changes the
    ordered list; its sparse scores may tie, and ties break by chunk id, the same in both."""
    col = open_collection(tmp_path / "c", create=True, encoder=word_encoder(), config=CollectionConfig(commit_every=2))
    assert col.add(SEGMENT_DOCS).commits == 6 and col.info()["segments"] == 6
    one = open_collection(tmp_path / "one", create=True, encoder=word_encoder())
    one.add(SEGMENT_DOCS)
    assert one.info()["segments"] == 1
    for mode in ("dense", "sparse", "colbert", "all", "dense+sparse+colbert+bm25"):
        a = [(h.id, h.score) for h in col.search("old capital by the park", mode=mode, k=12)]
        b = [(h.id, h.score) for h in one.search("old capital by the park", mode=mode, k=12)]
        assert len(b) >= 6, (mode, b)
        if mode != "sparse":  # no ties to hide behind
            assert len({round(s, 6) for _, s in b}) == len(b), (mode, b)
        assert [i for i, _ in a] == [i for i, _ in b], mode
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-6, atol=1e-6, err_msg=mode)


def test_manifest_names_only_files_that_exist(collection):
    m = json.loads((collection.folder / "manifest.json").read_text())
    for seg in m["segments"]:
        assert (collection.folder / "segments" / seg["name"] / "dense" / "dense.json").exists()
    assert np.all(np.diff([s["start"] for s in m["segments"]]) > 0) or len(m["segments"]) == 1


def word_encoder(seed=0):
    """An encoder object as an application would plug one in: hashed words, no transformer."""
    return FakeEncoder(dim=16, colbert_dim=16, seed=seed, name="word-hash-test")


def test_plugged_encoder_object_builds_and_searches(tmp_path):
    docs = [{"id": "dog", "text": "The dog runs in the park."}, {"id": "cat", "text": "Cats sleep all day long."},
            {"id": "qubit", "text": "Quantum computers use qubits."}]
    col = open_collection(tmp_path / "c", create=True, encoder=word_encoder())
    assert col.add(docs).chunks == 3 and col.config.model == "word-hash-test"
    for mode in MODES:
        assert ids(col.search("dog park", mode=mode, k=3))[0] == "dog", mode
    assert col.info()["model"] == "word-hash-test"
    again = open_collection(tmp_path / "c", encoder=word_encoder())  # same fingerprint: accepted
    assert ids(again.search("qubits", mode="sparse", k=1)) == ["qubit"]
    with pytest.raises(CollectionError, match="was built with model"):
        open_collection(tmp_path / "c", encoder=word_encoder(seed=1))
    with pytest.raises(InputError, match="either model= or encoder="):
        open_collection(tmp_path / "d", create=True, model="minilm", encoder=word_encoder())


def test_ids_lists_live_documents_matching_where(tmp_path):
    col = open_collection(tmp_path / "c", create=True, encoder=word_encoder())
    assert col.ids() == []
    col.add([{"id": "b", "text": "bees buzz", "group": "x", "n": 3}, {"id": "a", "text": "ants dig", "group": "y"},
             {"id": "c", "text": "cats nap", "group": "x", "n": 7}])
    assert col.ids() == ["a", "b", "c"]
    assert col.ids(["group=x"]) == ["b", "c"] and col.ids([("n", ">", "5")]) == ["c"]
    col.add([{"id": "a", "text": "ants moved", "group": "x"}])  # a replaced document answers with its new fields
    col.delete(["c"])
    assert col.ids(["group=x"]) == ["a", "b"] and col.ids(["group=y"]) == [] and col.ids() == ["a", "b"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab\u00e9", max_size=90), st.text(alphabet=" \n\t\u3000", max_size=300)),
                max_size=30))
def test_snippet_collapses_only_a_head_and_gives_the_whole_texts_cut(parts):
    from hsearch.storage.hitcols import SNIPPET_CHARS, snippet as _snippet

    text = "".join(a + b for a, b in parts)
    whole = " ".join(text.split())  # what a snippet was before: the whole text collapsed, then cut
    want = whole if len(whole) <= SNIPPET_CHARS else whole[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
    assert _snippet(text) == want


def test_a_query_without_a_mode_runs_every_signal_the_collection_holds(tmp_path):
    """The default mode is all+bm25 (min-max, the model's held-out weights), less the stores a collection was
    built without; naming one that is missing is still refused."""
    docs = [{"id": "a", "text": "dogs play fetch in the park"}, {"id": "b", "text": "cats sleep most of the day"}]
    full = open_collection(tmp_path / "full", create=True, encoder=FakeEncoder())
    full.add(docs)
    plan = full.plan("dogs")
    assert plan.signals == ("dense", "sparse", "colbert", "bm25") and plan.normalize == "minmax"
    assert full.info()["default_mode"] == "dense+sparse+colbert+bm25"
    assert ids(full.search("dogs", k=1)) == ids(full.search("dogs", mode="all+bm25", k=1)) == ["a"]
    for flags, want in (({"store_colbert": False}, ("dense", "sparse", "bm25")),
                        ({"bm25": False}, ("dense", "sparse", "colbert")),
                        ({"store_colbert": False, "bm25": False}, ("dense", "sparse"))):
        col = open_collection(tmp_path / "-".join(flags), create=True, encoder=FakeEncoder(),
                              config=CollectionConfig(**flags))
        col.add(docs)
        assert col.plan("dogs").signals == want and col.search("cats", k=1)[0].id == "b"
        with pytest.raises(InputError):
            col.plan("dogs", "all+bm25")


def test_one_signal_plans_cut_at_k_and_return_what_their_full_depth_returns(tmp_path, monkeypatch):
    """A plan ranked by the one signal that retrieves first asks its store for 2k chunks, and for its full depth
    only when a chunk left out could rank among the top-k documents: either way, the hits equal the full-depth
    plan's."""
    from hsearch.query import execute
    from hsearch.query.plan import Plan

    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(60)]
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(words, int(rng.integers(8, 70))))} for i in range(40)]
    col = open_collection(tmp_path / "c", create=True, encoder=FakeEncoder(dim=16, colbert_dim=8),
                          config=CollectionConfig(model="fake", chunk_tokens=16, chunk_overlap=0, dense_index="flat"))
    col.add(docs)
    depths = []
    rank = execute._Ranked._rank
    monkeypatch.setattr(execute._Ranked, "_rank", lambda self, *a: depths.append(a[-1] if len(a) == 6 else None)
                        or rank(self, *a))
    queries = [" ".join(rng.choice(words, 3)) for _ in range(12)]
    got = {(q, m, k): col.search(q, mode=m, k=k) for q in queries for m in ("dense", "sparse", "bm25") for k in (1, 3, 8)}
    fallbacks = depths.count(None)
    assert 0 < fallbacks < len(depths) - fallbacks  # both outcomes of the cut ran
    monkeypatch.setattr(Plan, "cuts_at_k", property(lambda self: False))
    for (q, m, k), hits in got.items():
        full = col.search(q, mode=m, k=k)
        assert [(h.id, h.chunk, h.score) for h in hits] == [(h.id, h.chunk, h.score) for h in full], (q, m, k)


def test_a_sparse_cut_holds_on_a_tie_and_returns_what_the_full_depth_returns(tmp_path, monkeypatch):
    """The sparse store orders equal scores by chunk id, as the ranking does, so a one-signal sparse plan's cut
    holds when its k-th document ties the short list's last chunk (identical texts tie exactly). BM25 and dense
    order ties their own way, so their plans go back for the full depth then."""
    from hsearch.query import execute
    from hsearch.query.plan import Plan

    texts = ["alpha beta gamma", "alpha beta delta", "alpha epsilon", "zeta eta theta"]
    docs = [{"id": f"d{i:02d}", "text": texts[i % len(texts)]} for i in range(48)]
    col = open_collection(tmp_path / "c", create=True, encoder=FakeEncoder(dim=16, colbert_dim=8),
                          config=CollectionConfig(model="fake", dense_index="flat"))
    for part in range(4):  # four segments: the tie order holds across them
        col.add(docs[part::4])
    depths = []
    rank = execute._Ranked._rank
    monkeypatch.setattr(execute._Ranked, "_rank", lambda self, *a: depths.append(a[-1] if len(a) == 6 else None)
                        or rank(self, *a))
    got = {}
    for q in ("alpha beta", "alpha", "gamma"):
        for k in (1, 3, 5):
            depths.clear()
            got[q, k] = col.search(q, mode="sparse", k=k)
            assert depths == [2 * k], (q, k, depths)  # the cut held, though the 2k-th chunk ties the k-th
            assert len({h.score for h in got[q, k]}) == 1  # the top-k all tie
    monkeypatch.setattr(Plan, "cuts_at_k", property(lambda self: False))
    for (q, k), hits in got.items():
        full = col.search(q, mode="sparse", k=k)
        assert [(h.id, h.chunk, h.score) for h in hits] == [(h.id, h.chunk, h.score) for h in full], (q, k)


def test_queries_ask_the_file_system_nothing_until_a_writer_commits(tmp_path, monkeypatch):
    """A reader learns of commits from the commit count the writers keep in a shared map (manifest.py, COMMITS),
    not from a system call per query; a commit by another writer (another Collection object, as another process
    would be) moves it, and the next query sees the new document."""
    import hsearch.engine as engine

    monkeypatch.setattr(engine, "REFRESH_S", 3600.0)  # no check for time's sake, however slow the machine
    docs = [{"id": "dog", "text": "The dog runs in the park."}, {"id": "cat", "text": "Cats sleep all day long."}]
    reader = open_collection(tmp_path / "c", create=True, encoder=word_encoder())
    reader.add(docs)
    writer = open_collection(tmp_path / "c", encoder=word_encoder())
    assert ids(reader.search("dog park", mode="bm25")) == ["dog"]
    ids(reader.search("dog park", mode="bm25"))  # the first full check that reads the count before the manifest
    stats = []
    real = engine.os.stat
    manifest = str(tmp_path / "c" / "manifest.json")
    monkeypatch.setattr(engine.os, "stat", lambda path, *a, **k: (str(path) == manifest and stats.append(path)) or real(path, *a, **k))
    for _ in range(20):
        assert ids(reader.search("dog park", mode="bm25")) == ["dog"]
    assert stats == []
    writer.add([{"id": "bird", "text": "A bird sings by the park."}])
    assert set(ids(reader.search("park", mode="bm25"))) == {"dog", "bird"}
    assert len(stats) == 1


@pytest.mark.parametrize("lost", ["count", "file"])
def test_a_commit_the_count_missed_is_seen_within_the_refresh(tmp_path, monkeypatch, lost):
    """A writer killed between its commit (the manifest) and the count (`lost` count), or a count file deleted
    under a reader (`lost` file: the reader's map keeps the old one): the reader still sees the commit, once
    REFRESH_S has passed since its last check of the manifest."""
    import hsearch.engine as engine
    import hsearch.storage.manifest as manifest

    monkeypatch.setattr(engine, "REFRESH_S", 3600.0)
    reader = open_collection(tmp_path / "c", create=True, encoder=word_encoder())
    reader.add([{"id": "dog", "text": "The dog runs in the park."}])
    ids(reader.search("park", mode="bm25"))
    ids(reader.search("park", mode="bm25"))
    writer = open_collection(tmp_path / "c", encoder=word_encoder())
    if lost == "count":
        monkeypatch.setattr(manifest, "count_commit", lambda folder: None)
    else:
        (tmp_path / "c" / manifest.COMMITS).unlink()
    writer.add([{"id": "bird", "text": "A bird sings by the park."}])
    assert ids(reader.search("park", mode="bm25")) == ["dog"]  # the count did not move: not checked yet
    monkeypatch.setattr(engine, "REFRESH_S", 0.0)
    assert set(ids(reader.search("park", mode="bm25"))) == {"dog", "bird"}


def test_a_collection_from_before_the_count_gets_one_from_its_next_writer(tmp_path):
    """A collection written before the commit count: its readers check the manifest on every query (and see
    commits), and the next writer, even one that commits nothing (`optimize` of one segment), adds the count."""
    import hsearch.storage.manifest as manifest

    col = open_collection(tmp_path / "c", create=True, encoder=word_encoder())
    col.add([{"id": "dog", "text": "The dog runs in the park."}])
    (tmp_path / "c" / manifest.COMMITS).unlink()
    reader = open_collection(tmp_path / "c", encoder=word_encoder())
    assert ids(reader.search("park", mode="bm25")) == ["dog"] and reader._commits is None
    col.optimize()
    assert (tmp_path / "c" / manifest.COMMITS).stat().st_size == 8
    open_collection(tmp_path / "c", encoder=word_encoder()).add([{"id": "bird", "text": "A bird in the park."}])
    assert set(ids(reader.search("park", mode="bm25"))) == {"dog", "bird"}
