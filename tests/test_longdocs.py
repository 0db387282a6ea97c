"""Long documents in the engine: with a long-context method a collection holds two views of every
document (passages by the plain model, the whole document by the extended one), and a query scores a
document by its best passage (maxp), its whole-document representation (whole), or both fused."""
import numpy as np
import pytest
from tiny_model import CORPUS

from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
from hsearch.errors import InputError
from hsearch.query.plan import make_plan
from hsearch.types import PASSAGE, WHOLE


def _docs():
    """Documents from one sentence to ~20 passages of the tiny model's 126-token window."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(12):
        n = [1, 3, 40, 120][i % 4]
        out.append({"id": f"d{i}", "text": " ".join(rng.choice(CORPUS, n))})
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_bgem3):
    """The same documents in a plain collection and in one built with pi:512 (four times the window)."""
    root = tmp_path_factory.mktemp("longdocs")
    plain = open_collection(root / "plain", create=True, model=str(tiny_bgem3),
                            config=CollectionConfig(model=str(tiny_bgem3), chunk_overlap=16))
    plain.add(_docs())
    long = open_collection(root / "long", create=True, model=str(tiny_bgem3),
                           config=CollectionConfig(model=str(tiny_bgem3), chunk_overlap=16, long_context="pi:512"))
    long.add(_docs())
    return plain, long


def _views(col):
    snap = col.snapshot()
    return snap, np.concatenate([s.views for s in snap.segments])


def test_every_document_has_both_views(pair):
    plain, long = pair
    snap, views = _views(long)
    rows = snap.doc_rows(np.arange(len(views)))
    assert set(np.unique(views)) == {PASSAGE, WHOLE}
    tok = long.encoder.tokenizer
    for d in _docs():  # passages as in the plain collection; the whole text, in pieces only past 512 tokens
        row = snap.docs.live_docs([s.name for s in snap.manifest.segments], snap.dead_docs)[d["id"]][0]
        n_tokens = len(tok(d["text"], add_special_tokens=False)["input_ids"])
        whole, passages = ((views[rows == row] == v).sum() for v in (WHOLE, PASSAGE))
        assert whole == 1 if n_tokens <= 500 else 2 <= whole < passages
    assert (views == PASSAGE).sum() == plain.info()["chunks"]
    assert long.info()["views"] == {"passage": (views == PASSAGE).sum(), "whole": (views == WHOLE).sum()}
    assert "views" not in plain.info()
    assert all(s.views is None for s in plain.snapshot().segments)


def test_maxp_over_passages_equals_the_plain_collection(pair):
    """The passages are encoded by the plain model, and the whole-document view never leaks into maxp.
    (depth 500 takes every passage: the tiny model's dense scores tie, and FAISS may break ties at the
    depth cut differently with the view's id selector, which changes min-max normalisation.)"""
    plain, long = pair
    for mode in ("dense", "sparse", "colbert", "bm25", "all", "dense+bm25"):
        for q in ("dog park", "qubits", "Hauptstadt"):
            a, b = (c.search(q, mode=mode, k=5, depth=500, doc_score="maxp") for c in (plain, long))
            assert [(h.id, round(h.score, 5), h.chunk, h.snippet) for h in a] == \
                   [(h.id, round(h.score, 5), h.chunk, h.snippet) for h in b], (mode, q)


def test_whole_scores_the_extended_encoding_of_the_whole_text(pair):
    _plain, long = pair
    enc = long.encoder
    docs = {d["id"]: d["text"] for d in _docs()}
    q = enc.encode_queries(["the dog runs in the park"])[0].dense
    hits = long.search("the dog runs in the park", mode="dense", doc_score="whole", k=12)
    assert len(hits) == 12
    for h in hits:
        if len(enc.tokenizer(docs[h.id])["input_ids"]) < 500:  # one piece: the whole document
            expected = float(q @ enc.encode_documents([docs[h.id]])[0].dense)
            assert h.scores["whole:dense"] == pytest.approx(expected, abs=1e-5) == pytest.approx(h.score, abs=1e-5)
        # the snippet is the document's best passage, scored as maxp would
        assert h.snippet and " ".join(h.snippet.replace(" ...", "").split()[:3]) in docs[h.id]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_both_fuses_the_two_document_rankings(pair):
    _plain, long = pair
    q = "Paris is the capital of France"
    maxp = {h.id: h.score for h in long.search(q, mode="dense", doc_score="maxp", k=12)}
    whole = {h.id: h.score for h in long.search(q, mode="dense", doc_score="whole", k=12)}
    both = long.search(q, mode="dense", doc_score="both", whole_weight=0.25, k=12)

    def minmax(d):
        lo, hi = min(d.values()), max(d.values())
        return {k: (v - lo) / (hi - lo) for k, v in d.items()}

    m, w = minmax(maxp), minmax(whole)
    for h in both:
        assert h.score == pytest.approx(0.75 * m.get(h.id, 0.0) + 0.25 * w.get(h.id, 0.0), abs=1e-6)
        assert "dense" in h.scores and "whole:dense" in h.scores
    assert long.search(q, mode="dense@both", k=3) == long.search(q, mode="dense", doc_score="both", k=3)
    only_whole = long.search(q, mode="dense", doc_score="both", whole_weight=1.0, k=12)
    assert [h.id for h in only_whole] == [h.id for h in long.search(q, mode="dense", doc_score="whole", k=12)]


def test_replacing_a_document_replaces_both_views(pair):
    _plain, long = pair
    before = long.info()["chunks"]
    long.add([{"id": "d2", "text": "Quantum computers use qubits."}])
    try:
        assert long.info()["chunks"] < before
        for doc_score in ("maxp", "whole", "both"):
            hits = long.search("qubits", mode="dense+bm25", doc_score=doc_score, k=12, depth=500)
            assert len({h.id for h in hits}) == len(hits) == 12  # each document once, none from old pieces
            assert next(h for h in hits if h.id == "d2").snippet == "Quantum computers use qubits."
    finally:
        long.add([d for d in _docs() if d["id"] == "d2"])


def test_default_doc_score(pair):
    """Both views by default where there are two (measured best on passkey); the best passage elsewhere."""
    plain, long = pair
    assert long.plan("dog", "dense").doc_score == "both" and plain.plan("dog", "dense").doc_score == "maxp"
    assert long.plan("dog", "dense@maxp").doc_score == "maxp"
    assert long.search("dog", mode="dense") == long.search("dog", mode="dense", doc_score="both")


def test_errors(pair):
    plain, _long = pair
    with pytest.raises(InputError, match="long-context method"):
        plain.search("dog", mode="dense", doc_score="whole")
    with pytest.raises(InputError, match="unknown document score 'best'"):
        make_plan("dog", "dense@best")
    with pytest.raises(InputError, match="whole_weight"):
        make_plan("dog", "dense", doc_score="both", whole_weight=2)
    assert "best passage" in make_plan("dog", "dense+bm25@both").describe()


def test_chunks_fit_the_window_after_retokenising(pair):
    """A span cut out of a text can tokenise into one more token than it covered; chunks are shrunk
    until they fit, and neighbours still overlap, so no token is dropped by the encoder."""
    from hsearch.ingest.chunking import chunk_text

    tok = pair[0].encoder.tokenizer
    text = " ".join(d["text"] for d in _docs())
    for size, overlap in ((124, 16), (50, 0), (30, 5)):
        chunks = chunk_text(text, tok, size, overlap)
        assert len(chunks) > 3
        assert all(len(tok(c.text, add_special_tokens=False)["input_ids"]) <= size for c in chunks)
        assert all(b.start <= a.end or not text[a.end:b.start].strip() for a, b in zip(chunks, chunks[1:]))
        assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
        # no stub at the end: the last chunk is (about) as long as the others
        assert len(tok(chunks[-1].text, add_special_tokens=False)["input_ids"]) >= size - 2


def test_cli_doc_score(pair):
    from click.testing import CliRunner

    from hsearch.cli import main

    plain, long = pair
    r = CliRunner().invoke(main, ["query", "dog park", "-c", str(long.folder), "--mode", "dense+bm25",
                                  "--doc-score", "both", "--whole-weight", "0.3", "--explain", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert "whole=0.3" in r.output and "whole:dense=" in r.output and r.output.count("chunk=") == 3
    r = CliRunner().invoke(main, ["query", "dog", "-c", str(plain.folder), "--doc-score", "whole"])
    assert r.exit_code != 0 and "long-context" in r.output and "Traceback" not in r.output


def test_long_documents_bound_a_commit_by_text(tmp_path, tiny_bgem3, monkeypatch):
    """A commit keeps its token vectors in memory: long documents split a run into several commits even
    far below `commit_every` chunks, and the collection answers as one built in a single commit."""
    import hsearch.writer

    cfg = CollectionConfig(model=str(tiny_bgem3), chunk_overlap=16, long_context="pi:512")
    one = open_collection(tmp_path / "one-commit", create=True, model=str(tiny_bgem3), config=cfg)
    assert one.add(_docs()).commits == 1
    monkeypatch.setattr(hsearch.writer, "MAX_COMMIT_CHARS", 3000)
    many = open_collection(tmp_path / "small-commits", create=True, model=str(tiny_bgem3), config=cfg)
    assert many.add(_docs()).commits >= 4 and many.info()["views"] == one.info()["views"]
    for doc_score in ("maxp", "whole", "both"):
        # bm25: exact across commits (the tiny model's dense scores differ in the last bits with the
        # batches a commit makes, and nearly tie, so min-max fusion would amplify that)
        a, b = (c.search("dog park Hauptstadt", mode="bm25", doc_score=doc_score, depth=500, k=5) for c in (one, many))
        assert [(h.id, round(h.score, 6)) for h in a] == [(h.id, round(h.score, 6)) for h in b]
