"""The heads shipped for the default model: how a bundled base folder gets them, and that they load."""
import json
import os

import numpy as np
import pytest
import torch

from hsearch.encode import load_encoder, loader
from hsearch.encode.loader import SHIPPED_HEADS, _fingerprint, with_shipped_heads
from hsearch.engine import open_collection
from hsearch.errors import CollectionError, ModelError
from tiny_model import build_tiny_bgem3


@pytest.fixture()
def base_and_heads(tmp_path):
    base = build_tiny_bgem3(tmp_path / "models" / "tiny", heads=False)
    heads = tmp_path / "heads"
    heads.mkdir()
    torch.manual_seed(3)
    torch.save(torch.nn.Linear(32, 1).state_dict(), heads / "sparse_linear.pt")
    torch.save(torch.nn.Linear(32, 16).state_dict(), heads / "colbert_linear.pt")
    (heads / "training.json").write_text(json.dumps({"base_fingerprint": _fingerprint(base)}))
    (heads / "MODEL_CARD.md").write_text("# tiny heads\n")
    return base, heads


def test_heads_join_the_base_folder_once_sharing_its_weights(base_and_heads):
    base, heads = base_and_heads
    folder = with_shipped_heads(base, heads, "tiny")
    assert folder.parent == base.parent and folder != base
    assert with_shipped_heads(base, heads, "tiny") == folder  # made once
    assert (folder / "model.safetensors").stat().st_ino == (base / "model.safetensors").stat().st_ino
    assert not any(f.name.endswith(".pt") for f in base.iterdir())  # the base folder is untouched
    enc, plain = load_encoder(str(folder)), load_encoder(str(base))
    assert (enc.spec.name, enc.spec.sparse_head, enc.spec.colbert_head) == ("tiny", "trained", "trained")
    assert (plain.spec.sparse_head, plain.spec.colbert_head) == ("unit", "identity")
    assert enc.colbert_dim == 16 and enc.spec.fingerprint != plain.spec.fingerprint
    a, b = enc.encode_documents(["the cat sat"])[0], plain.encode_documents(["the cat sat"])[0]
    np.testing.assert_allclose(a.dense, b.dense, rtol=1e-5, atol=1e-6)  # same transformer
    assert a.colbert.shape[1] == 16 and b.colbert.shape[1] == 32
    assert not list(base.parent.glob(".heads-*"))  # no temporary folder left behind


def test_new_heads_get_a_new_folder_and_missing_heads_are_named(base_and_heads):
    base, heads = base_and_heads
    first = with_shipped_heads(base, heads, "tiny")
    torch.save(torch.nn.Linear(32, 1).state_dict(), heads / "sparse_linear.pt")
    assert with_shipped_heads(base, heads, "tiny") != first  # an upgrade never reuses the old heads
    os.remove(heads / "colbert_linear.pt")
    with pytest.raises(ModelError, match="base"):
        with_shipped_heads(base, heads, "tiny")


def test_a_collection_of_the_old_model_says_how_to_open_it(tmp_path, base_and_heads, corpus, monkeypatch):
    base, heads = base_and_heads
    col = open_collection(tmp_path / "col", create=True, model=str(base))
    col.index(corpus)
    # the model folder changes under the collection's feet (as e5-small did when it gained heads)
    for f in heads.iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    with pytest.raises(CollectionError, match="another version of model") as err:
        open_collection(tmp_path / "col").search("dog")
    assert "--model" in str(err.value) and "from an earlier version" not in str(err.value)
    # files an alias had in an earlier version of hsearch are named when they are still shipped
    built = json.loads((tmp_path / "col" / "manifest.json").read_text())["encoder"]["fingerprint"]
    monkeypatch.setitem(loader.FORMER_FILES, built, "tiny-old")
    with pytest.raises(CollectionError, match="from an earlier version of hsearch: --model tiny-old"):
        open_collection(tmp_path / "col").search("dog")
    # the user's way out, from the error's advice: the old files under another name
    old = tmp_path / "models" / "tiny-old"
    old.mkdir()
    for f in base.iterdir():
        if f.name not in {h.name for h in heads.iterdir()}:
            os.link(f, old / f.name)
    assert open_collection(tmp_path / "col", model=str(old)).search("dog")
    from click.testing import CliRunner

    from hsearch.cli import main

    r = CliRunner().invoke(main, ["query", "dog", "--collection", str(tmp_path / "col"), "--mode", "dense"])
    assert r.exit_code != 0 and "another version of model" in r.output
    r = CliRunner().invoke(main, ["query", "dog", "--collection", str(tmp_path / "col"), "--mode", "dense",
                                  "--model", str(old)])
    assert r.exit_code == 0, r.output


@pytest.mark.skipif(not (SHIPPED_HEADS / "e5-small" / "sparse_linear.pt").exists(), reason="heads not shipped")
def test_shipped_e5_small_heads_fit_the_bundled_model():
    card = json.loads((SHIPPED_HEADS / "e5-small" / "training.json").read_text())
    base = load_encoder("e5-small-base")
    assert card["base_fingerprint"] == base.spec.fingerprint  # trained on exactly this transformer
    enc = load_encoder("e5-small")
    # the shipped multi-vector head is the identity matrix: said so, and no matmul is run for it
    assert (enc.spec.sparse_head, enc.spec.colbert_head) == ("trained", "identity-file")
    assert enc.colbert_linear is None and "identity" in enc.spec.describe_heads()["colbert"]
    assert "trained" not in enc.spec.describe_heads()["colbert"]
    assert (SHIPPED_HEADS / "e5-small" / "MODEL_CARD.md").read_text().count("hsearch train") >= 1
    for state in (torch.load(SHIPPED_HEADS / "e5-small" / f, weights_only=True)
                  for f in ("sparse_linear.pt", "colbert_linear.pt")):
        assert all(torch.isfinite(v).all() for v in state.values())
    docs = enc.encode_documents(["The cat sat on the mat.", "Stock markets fell sharply today."])
    q = enc.encode_queries(["where did the cat sit?"])[0]
    shared = [t for t in q.sparse if t in docs[0].sparse]
    assert shared and sum(q.sparse[t] * docs[0].sparse[t] for t in shared) > \
        sum(q.sparse[t] * docs[1].sparse.get(t, 0.0) for t in q.sparse)


def test_heads_carry_their_fusion_weights_into_the_collections_built_with_them(tmp_path, base_and_heads, corpus):
    base, heads = base_and_heads
    before = _fingerprint(with_shipped_heads(base, heads, "tiny"))
    (heads / "fusion.json").write_text(json.dumps({"weights": {"sparse": 0.05}, "chosen_on": "held-out pairs"}))
    folder = with_shipped_heads(base, heads, "tiny")
    assert _fingerprint(folder) == before  # a query-time default: collections built before stay valid
    assert load_encoder(str(folder)).spec.fusion_weights == {"sparse": 0.05}
    col = open_collection(tmp_path / "col", create=True, model=str(folder))
    col.index(corpus)
    assert col.plan("dog", "dense+sparse").weights == {"dense": 0.4, "sparse": 0.05}
    # the user's weights win; what they leave out is the model's, then the planner's
    assert col.plan("dog", "dense+sparse", weights="dense=0.5").weights == {"dense": 0.5, "sparse": 0.05}
    assert col.plan("dog", "dense+sparse", weights="sparse=0.3").weights == {"dense": 0.4, "sparse": 0.3}
    assert col.plan("dog", "all", weights={"colbert": 0.1}).weights == {"dense": 0.4, "sparse": 0.05, "colbert": 0.1}
    # raw sums only: a normalised fusion puts the heads' scores on one scale, where the defaults stay
    assert col.plan("dog", "dense+sparse+bm25").weights == {"dense": 0.4, "sparse": 0.2, "bm25": 0.4}
    assert col.plan("dog", "dense+sparse", normalize="dbsf").weights == {"dense": 0.4, "sparse": 0.2}
    reopened = open_collection(tmp_path / "col")  # recorded in the manifest: no model load needed to plan
    assert reopened.info()["default_weights"] == {"dense": 0.4, "sparse": 0.05, "colbert": 0.4, "bm25": 0.4}
    assert reopened._encoder is None and "sparse=0.05" in reopened.plan("dog", "dense+sparse").describe()
    plain = open_collection(tmp_path / "plain", create=True, model=str(base))
    assert plain.plan("dog", "dense+sparse").weights == {"dense": 0.4, "sparse": 0.2}


def test_heads_can_carry_min_max_weights_too(tmp_path, base_and_heads, corpus):
    base, heads = base_and_heads
    (heads / "fusion.json").write_text(json.dumps({"weights": {"sparse": 0.05},
                                                   "weights_minmax": {"dense": 0.3, "colbert": 0.5, "bm25": 0.2}}))
    folder = with_shipped_heads(base, heads, "tiny")
    col = open_collection(tmp_path / "col", create=True, model=str(folder))
    col.index(corpus)
    # min-max (the default with bm25) takes the model's min-max weights, then the planner's for the rest
    assert col.plan("dog", "dense+sparse+colbert+bm25").weights == {"dense": 0.3, "sparse": 0.2, "colbert": 0.5, "bm25": 0.2}
    assert col.plan("dog", "dense+sparse").weights == {"dense": 0.4, "sparse": 0.05}  # raw: unchanged
    assert col.plan("dog", "dense+bm25", fusion="rrf").weights == {"dense": 0.4, "bm25": 0.4}
    assert col.plan("dog", "dense+bm25", weights="bm25=0.9").weights == {"dense": 0.3, "bm25": 0.9}
    info = open_collection(tmp_path / "col").info()
    assert info["default_weights"]["sparse"] == 0.05 and info["default_weights_minmax"]["colbert"] == 0.5


def test_long_documents_take_the_models_long_document_weights(tmp_path, base_and_heads):
    from hsearch.config import CollectionConfig
    from hsearch.query.plan import LONG_DOCUMENTS

    base, heads = base_and_heads
    (heads / "fusion.json").write_text(json.dumps({"weights": {"sparse": 0.05},
                                                   "weights_minmax": {"dense": 0.3, "colbert": 0.5, "bm25": 0.2},
                                                   "weights_minmax_long": {"dense": 0.1, "sparse": 0.4, "bm25": 0.3}}))
    folder = with_shipped_heads(base, heads, "tiny")
    words = "cats sleep most of the day and hunt at night while dogs guard the house and bark at strangers".split()
    long_text = " ".join(f"{words[i % len(words)]} {i}" for i in range(40 * LONG_DOCUMENTS))
    for name, text, expect in (("short", "Cats sleep a lot.", "minmax"), ("long", long_text, "minmax_long")):
        col = open_collection(tmp_path / name, create=True, model=str(folder),
                              config=CollectionConfig(model=str(folder), chunk_tokens=32, chunk_overlap=0))
        col.add([{"id": f"{name}{i}", "text": text} for i in range(3)])
        assert (col.snapshot().passages_per_document >= LONG_DOCUMENTS) == (name == "long")
        weights = {"minmax": {"dense": 0.3, "sparse": 0.2, "colbert": 0.5, "bm25": 0.2},
                   "minmax_long": {"dense": 0.1, "sparse": 0.4, "colbert": 0.4, "bm25": 0.3}}[expect]
        assert col.plan("cats", "all+bm25").weights == weights
        assert col.plan("cats", "dense+sparse").weights == {"dense": 0.4, "sparse": 0.05}  # raw sums: one set
        info = open_collection(tmp_path / name).info()
        assert info["long_documents"] == (name == "long") and info["default_weights_minmax"] == weights


def test_heads_can_carry_weights_for_queries_foreign_to_the_collection(tmp_path, base_and_heads, corpus):
    base, heads = base_and_heads
    (heads / "fusion.json").write_text(json.dumps({"weights": {"sparse": 0.05},
                                                   "weights_minmax": {"dense": 0.3, "colbert": 0.5, "bm25": 0.2},
                                                   "weights_minmax_low_coverage": {"colbert": 1},
                                                   "low_coverage_below": 0.5}))
    folder = with_shipped_heads(base, heads, "tiny")
    col = open_collection(tmp_path / "col", create=True, model=str(folder))
    col.index(corpus)
    low = {"dense": 0.0, "sparse": 0.0, "colbert": 1.0, "bm25": 0.0}
    assert col.plan("dog", "all+bm25").low_coverage == (0.5, low)  # the model's own, by default
    assert col.plan("dog", "all+bm25", weights="bm25=0.9").low_coverage == ()  # weights given: those hold
    assert col.plan("dog", "dense+bm25").low_coverage == ()  # no signal of the mode has a low-coverage weight
    assert col.plan("dog", "dense+sparse+colbert").low_coverage == ()  # no bm25 to read the coverage from
    assert col.plan("dog", "all+bm25", fusion="rrf").low_coverage == ()
    assert open_collection(tmp_path / "col").info()["low_coverage"] == {"below": 0.5, "weights": {"colbert": 1.0}}


@pytest.mark.parametrize("bad", ['{"weights": {"sparce": 0.1}}', '{"weights": {"sparse": -1}}',
                                 '{"weights": {}, "weights_minmax_low_coverage": {"colbert": 1}}',
                                 '{"weights": {}, "weights_minmax_low_coverage": {"colbert": 1}, "low_coverage_below": 0}',
                                 '{"weights": {}, "weights_minmax": {"dense": "high"}}',
                                 '{"weights": {}, "weights_minmax_long": {"bm52": 0.3}}',
                                 '{"weights": [0.4, 0.1]}', '{"weights": {"sparse": "low"}}', "{not json"])
def test_a_bad_fusion_file_is_named_with_what_to_do(base_and_heads, bad):
    base, heads = base_and_heads
    (heads / "fusion.json").write_text(bad)
    with pytest.raises(ModelError, match="fusion.json.*(fix or delete|not valid JSON)"):
        load_encoder(str(with_shipped_heads(base, heads, "tiny")))
