"""The runtimes and precisions against the reference (torch, fp32): same tokens, same three outputs within
stated tolerances, same rankings; the choice of runtime and its refusals; the export cache's faults."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from hsearch.encode import load_encoder  # noqa: E402
from hsearch.encode import onnx_export, onnx_graph, precision  # noqa: E402
from hsearch.encode.onnx_encoder import OnnxEncoder  # noqa: E402
from hsearch.encode.tokenizer import FastTokenizer  # noqa: E402
from hsearch.errors import HsearchError, InputError  # noqa: E402

TEXTS = ["The dog runs in the park.", "Der Hund läuft im Park, jeden Morgen!", "ä" * 3 + " 北京 is a city\twith  tabs",
         "Quantum computers use qubits; cats sleep.", "x", "Retrieval augmented generation needs search. " * 40]
# torch and ONNX Runtime run the same float32 graph with other kernels: measured differences are ~1e-6
TOL = 1e-4


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One export per model for the tests that only read the cache."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("cache")
        mp.setenv("HSEARCH_CACHE", str(root))
        yield root


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A cache of the test's own, for the tests that damage or race for it."""
    monkeypatch.setenv("HSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def unit_heads(tmp_path_factory):
    from tiny_model import build_tiny_bgem3

    return build_tiny_bgem3(tmp_path_factory.mktemp("tiny-plain"), seed=3, heads=False)


def _same(a, b, tol=TOL):
    assert a.n_tokens == b.n_tokens
    np.testing.assert_allclose(a.dense, b.dense, atol=tol)
    assert a.sparse.keys() == b.sparse.keys()
    np.testing.assert_allclose([a.sparse[t] for t in a.sparse], [b.sparse[t] for t in a.sparse], atol=tol)
    assert a.colbert.shape == b.colbert.shape
    np.testing.assert_allclose(a.colbert, b.colbert, atol=tol)


def _model_dirs(tiny_bgem3, unit_heads):
    dirs = {"tiny": tiny_bgem3, "tiny-unit-heads": unit_heads}
    try:
        from hsearch.encode.loader import resolve_model_dir

        dirs["minilm"] = resolve_model_dir("minilm")  # BERT WordPiece, token type ids, mean pooling
    except HsearchError:
        pass
    return dirs


def test_fast_tokenizer_gives_transformers_ids_offsets_and_truncation(shared_cache, tiny_bgem3, unit_heads):
    from transformers import AutoTokenizer

    for name, folder in _model_dirs(tiny_bgem3, unit_heads).items():
        hf = AutoTokenizer.from_pretrained(str(folder))
        ours = load_encoder(str(folder), precision="fp32", runtime="onnx").tokenizer
        assert isinstance(ours, FastTokenizer)
        assert ours(TEXTS)["input_ids"] == hf(TEXTS)["input_ids"], name
        assert ours(TEXTS, truncation=True, max_length=9)["input_ids"] == \
            hf(TEXTS, truncation=True, max_length=9)["input_ids"], name
        got = ours(TEXTS[1], add_special_tokens=False, return_offsets_mapping=True)
        want = hf(TEXTS[1], add_special_tokens=False, return_offsets_mapping=True)
        assert (got["input_ids"], [tuple(o) for o in got["offset_mapping"]]) == \
            (want["input_ids"], [tuple(o) for o in want["offset_mapping"]]), name
        assert ours.num_special_tokens_to_add() == hf.num_special_tokens_to_add(), name
        assert ours(TEXTS[:2])["input_ids"] == hf(TEXTS[:2])["input_ids"], name  # truncation switched off again


def test_onnx_encoder_equals_torch_on_every_output(shared_cache, tiny_bgem3, unit_heads):
    for name, folder in _model_dirs(tiny_bgem3, unit_heads).items():
        ref = load_encoder(str(folder))
        fast = load_encoder(str(folder), precision="fp32", runtime="onnx")
        assert isinstance(fast, OnnxEncoder) and fast.spec == ref.spec, name
        assert (fast.dim, fast.colbert_dim) == (ref.dim, ref.colbert_dim)
        for is_query in (True, False):
            for a, b in zip(fast.encode(TEXTS, is_query=is_query), ref.encode(TEXTS, is_query=is_query)):
                _same(a, b)
        # one batch per text, at its own length, as a single query is encoded
        _same(fast.encode_queries(TEXTS[:1])[0], ref.encode_queries(TEXTS[:1])[0])


def test_the_export_writes_the_fused_graphs_and_falls_back_to_torch_export(cache, tiny_bgem3, monkeypatch):
    fast = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
    meta = json.loads((fast.folder / "runtime.json").read_text())
    assert meta["graph"] == "hsearch" and meta["int8"]["probe_cosine"] > onnx_export.INT8_MIN_COSINE
    assert "graph.int8.onnx" in meta["files"]  # written at export, calibrated, not made on first use

    # an int8 graph that misses the bar is not kept: int8 then quantises the (hand-written) fp32 graph dynamically
    monkeypatch.setattr(onnx_export, "INT8_MIN_COSINE", 1.5)
    strict = cache / "strict"
    onnx_export.export(load_encoder(str(tiny_bgem3)), strict)
    meta = json.loads((strict / "runtime.json").read_text())
    assert meta["graph"] == "hsearch" and meta["int8"] is None and "graph.int8.onnx" not in meta["files"]
    dynamic = OnnxEncoder(strict, tiny_bgem3, precision="int8")
    for a, b in zip(dynamic.encode_documents(TEXTS), fast.encode_documents(TEXTS)):
        assert float(a.dense @ b.dense) > 0.99

    def refuse(model):
        raise onnx_graph.GraphError("not a model the builder writes")

    monkeypatch.setattr(onnx_graph, "bert_weights", refuse)
    folder = cache / "other"
    onnx_export.export(load_encoder(str(tiny_bgem3)), folder)
    meta = json.loads((folder / "runtime.json").read_text())
    assert meta["graph"] == "torch.onnx.export" and meta["int8"] is None
    assert "graph.int8.onnx" not in meta["files"]  # int8 then comes from dynamic quantisation, on first use
    ref = load_encoder(str(tiny_bgem3))
    other = OnnxEncoder(folder, tiny_bgem3)
    for a, b in zip(other.encode_documents(TEXTS), ref.encode_documents(TEXTS)):
        _same(a, b)


def test_int8_and_bf16_stay_close_to_fp32(shared_cache, tiny_bgem3):
    ref = load_encoder(str(tiny_bgem3)).encode_documents(TEXTS)
    others = [load_encoder(str(tiny_bgem3), precision="int8", runtime="onnx")]
    if precision.cpu_has_bf16():
        others.append(load_encoder(str(tiny_bgem3), precision="bf16", runtime="torch"))
    for enc in others:
        for a, b in zip(enc.encode_documents(TEXTS), ref):
            assert float(a.dense @ b.dense) > 0.99, enc.precision  # measured 0.999+ on this random model
            assert a.colbert.shape == b.colbert.shape
            assert float(np.mean(np.sum(a.colbert * b.colbert, axis=1))) > 0.99


def test_a_collection_ranks_the_same_whichever_runtime_encodes_the_query(shared_cache, tmp_path, tiny_bgem3, corpus):
    from hsearch.engine import open_collection

    col = open_collection(tmp_path / "col", create=True, model=str(tiny_bgem3), precision="fp32", runtime="torch")
    col.index(corpus)
    assert col.info()["precisions"] == ["torch/fp32"]
    fast = open_collection(tmp_path / "col", precision="auto", runtime="auto")
    assert fast.query_encoder.runtime == "onnx"
    for q in ("dogs in the park", "Hauptstadt", "qubits"):
        for mode in ("dense+sparse", "all", "colbert"):
            want = [(h.id, h.score) for h in col.search(q, mode=mode, k=5)]
            got = [(h.id, h.score) for h in fast.search(q, mode=mode, k=5)]
            assert [i for i, _ in got] == [i for i, _ in want], (q, mode)
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=TOL)


def test_a_query_process_imports_neither_torch_nor_transformers(shared_cache, tmp_path, tiny_bgem3, corpus):
    from hsearch.engine import open_collection

    col = open_collection(tmp_path / "col", create=True, model=str(tiny_bgem3), precision="fp32", runtime="auto")
    col.index(corpus)  # exports the query graph, so the query below starts from the cache
    code = ("import sys; from hsearch.engine import open_collection; "
            f"hits = open_collection({str(tmp_path / 'col')!r}).search('dogs in the park', mode='dense+sparse', k=3); "
            "print(len(hits), 'torch' in sys.modules, 'transformers' in sys.modules)")
    env = {**os.environ, "HSEARCH_RUNTIME": "auto", "HSEARCH_PRECISION": "auto"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "False", "False"]


def test_precision_choices_and_refusals(monkeypatch):
    choose = precision.choose
    assert str(choose("fp32", "torch")) == "torch/fp32"
    assert str(choose("int8", "auto", "queries")) == "onnx/int8"
    assert str(choose("auto", "auto", "queries")) == "onnx/fp32"
    assert choose("auto", "auto", "queries", long_context=object()).runtime == "torch"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert str(choose("auto", "auto", "documents", device="cpu")) == "torch/bf16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert str(choose("auto", "auto", "documents", device="cpu")) == "torch/fp32"
    refusals = [(("bf16", "torch", "documents", "cpu"), "no bf16 instructions"),
                (("fp16", "auto", "documents", "cpu"), "fp16 needs a CUDA GPU"),
                (("int8", "torch"), "int8 runs on ONNX Runtime"),
                (("bf16", "onnx"), "use --runtime torch"),
                (("fp32", "onnx", "queries", None, object()), "long-context methods run on torch"),
                (("fp33", "auto"), "choose from auto, fp32, bf16, fp16, int8"),
                (("fp32", "tensorrt"), "choose from auto, torch, onnx")]
    for args, message in refusals:
        with pytest.raises(InputError, match=message):
            choose(*args)


def test_a_damaged_export_is_rebuilt_and_a_finished_one_is_kept(cache, tiny_bgem3):
    enc = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
    folder = enc.folder
    want = enc.encode_queries(["dogs"])[0]
    for damage in ("graph.fp32.onnx", "embeddings.npy", "runtime.json"):
        target = folder / damage
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # a write cut short
        again = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
        assert again.folder == folder and onnx_export.MARKER in os.listdir(folder)
        _same(again.encode_queries(["dogs"])[0], want)
    (folder / "graph.fp32.onnx").write_bytes(b"not a graph")  # same size check passes? no: size differs, rebuilt
    _same(load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx").encode_queries(["dogs"])[0], want)
    # a second export into a finished folder (another process won the race) keeps the first, intact
    before = sorted(os.listdir(folder))
    assert onnx_export.export(load_encoder(str(tiny_bgem3)), folder) == folder
    assert sorted(os.listdir(folder)) == before and not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_two_processes_exporting_at_once_leave_one_good_copy(cache, tiny_bgem3):
    code = ("from hsearch.encode import load_encoder; "
            f"e = load_encoder({str(tiny_bgem3)!r}, precision='fp32', runtime='onnx'); print(e.folder)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _o, e in outs]
    folders = {o.strip() for o, _e in outs}
    assert len(folders) == 1 and [p.name for p in cache.joinpath("onnx").iterdir()] == [Path(folders.pop()).name]


def test_a_model_that_cannot_be_exported_stays_on_torch_with_a_note(cache, tiny_bgem3, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_export, "_check", broken)
    with caplog.at_level(logging.WARNING, logger="hsearch"):
        enc = load_encoder(str(tiny_bgem3), precision="auto", runtime="auto", purpose="queries")
    assert enc.runtime == "torch" and enc.precision == "fp32"
    assert "could not export" in caplog.text or "unsupported operator" in caplog.text
    with pytest.raises(HsearchError):  # asked for by name: refused, not silently replaced
        load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")


MULTILINGUAL = ["how much do cats sleep?", "Wie lange schlafen Katzen?", "¿Cuánto duermen los gatos?",
                "Сколько спят кошки?", "كم تنام القطط؟", "बिल्लियाँ कितना सोती हैं?", "แมวนอนนานแค่ไหน",
                "猫睡多久？", "Kediler ne kadar uyur?", "Mèo ngủ bao lâu?", "Πόσο κοιμούνται οι γάτες;",
                "  two  spaces\tand a tab ", "e\u0301 combining, ﬁ ligature, ＦＵＬＬ width, 🙂", "x"]


def _lexicon_for(hf_tokenizer, folder):
    from hsearch.encode.lexicon import Lexicon, write_lexicon

    backend = hf_tokenizer.backend_tokenizer
    assert write_lexicon(json.loads(backend.to_str()), folder, hf_tokenizer("a b")["input_ids"],
                         hf_tokenizer("a b", add_special_tokens=False)["input_ids"])
    return Lexicon(folder), backend


@pytest.mark.parametrize("model", ["tiny", "e5-small"])
def test_lexicon_tokenises_exactly_as_the_whole_vocabulary(model, tiny_bgem3, tmp_path):
    """The query path's Unigram shortcut (hsearch/encode/lexicon.py) against the full tokenizer."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from transformers import AutoTokenizer

    from hsearch.encode.loader import resolve_model_dir

    folder = tiny_bgem3 if model == "tiny" else resolve_model_dir("e5-small-base")
    lexicon, full = _lexicon_for(AutoTokenizer.from_pretrained(str(folder)), tmp_path)
    texts = MULTILINGUAL + TEXTS
    assert lexicon.encode(texts) == [e.ids for e in full.encode_batch(texts)]
    assert lexicon.encode(texts, add_special_tokens=False) == [e.ids for e in full.encode_batch(texts, add_special_tokens=False)]

    @settings(max_examples=150, deadline=None)
    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
    def same(text):
        if lexicon.handles(text):
            assert lexicon.encode([text]) == [full.encode(text).ids]

    same()


def test_fast_tokenizer_uses_the_lexicon_for_queries_and_the_whole_tokenizer_for_the_rest(shared_cache, tiny_bgem3):
    enc = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
    tok = enc.tokenizer
    assert tok._lexicon is not None and tok._full is None
    ids = enc.encode_queries(["dogs in the park"])[0]
    assert tok._full is None and ids.n_tokens > 2  # a query never loaded the whole vocabulary
    tok(["dogs in the park"], return_offsets_mapping=True)  # offsets (chunking) need the whole tokenizer
    assert tok._full is not None
    again = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
    for _ in range(9):  # a process that keeps encoding queries moves to the whole tokenizer
        assert again.encode_queries(["dogs in the park"])[0].n_tokens == ids.n_tokens
    assert again.tokenizer._full is not None
    warmed = load_encoder(str(tiny_bgem3), precision="fp32", runtime="onnx")
    warmed.warm()
    assert warmed.tokenizer._full is not None
