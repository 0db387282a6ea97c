"""Long-context methods (hsearch/encode/longctx.py) on tiny random checkpoints: XLM-R (learned absolute
positions, window 126) and ModernBERT (RoPE, window 64). Factor 1 is the plain model; the RoPE tables
equal transformers' own; position ids, the interpolated table, chunk and MCLS pooling and SelfExtend
follow their documented definitions; long inputs encode; wrong methods fail with a clear InputError."""
import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from tiny_model import CORPUS, build_tiny_modernbert  # noqa: E402

from hsearch.cli import main  # noqa: E402
from hsearch.encode import Encoder, LongContext, load_encoder  # noqa: E402
from hsearch.encode import longctx as lcx  # noqa: E402
from hsearch.encode import longctx_attention as attn  # noqa: E402
from hsearch.encode import longctx_rope as rope  # noqa: E402
from hsearch.errors import InputError  # noqa: E402
from hsearch.types import PASSAGE, WHOLE  # noqa: E402

TEXTS = [" ".join(CORPUS[:k]) for k in (1, 3, 9, 30)]  # 18 to ~700 tokens: the long ones are cut at the window
ABSOLUTE = ["native", "chunk", "mcls", "pi", "rp", "gp"]
ROPE = ABSOLUTE + ["ntk", "yarn", "selfextend"]


@pytest.fixture(scope="module")
def xlmr(tiny_bgem3):
    return load_encoder(str(tiny_bgem3), device="cpu")


@pytest.fixture(scope="module")
def modernbert_dir(tmp_path_factory):
    return build_tiny_modernbert(tmp_path_factory.mktemp("tiny-modernbert"))


@pytest.fixture(scope="module")
def modernbert(modernbert_dir):
    return load_encoder(str(modernbert_dir), device="cpu")


@pytest.fixture(scope="module")
def modernbert_local(tmp_path_factory):
    """Global and local (sliding-window, radius 8) attention layers alternating, as in ModernBERT."""
    folder = build_tiny_modernbert(tmp_path_factory.mktemp("tiny-modernbert-local"), global_every=2,
                                   local_attention=16)
    return load_encoder(str(folder), device="cpu")


def extended(plain: Encoder, text: str, spec=None) -> Encoder:
    """The same weights as `plain`, with a long-context method."""
    return Encoder(plain.model, plain.tokenizer, spec or plain.spec, plain.sparse_linear, plain.colbert_linear,
                   device="cpu", long_context=LongContext.parse(text))


def text_of(enc: Encoder, tokens: int) -> str:
    """A text of CORPUS sentences with at most `tokens` tokens (special tokens included), and close to it."""
    best = CORPUS[0]
    for k in range(1, len(CORPUS)):
        candidate = " ".join(CORPUS[:k])
        if len(enc.tokenizer(candidate)["input_ids"]) > tokens:
            break
        best = candidate
    return best


def assert_same(got, want, atol=1e-5):
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.dense, b.dense, atol=atol)
        assert a.sparse.keys() == b.sparse.keys()
        np.testing.assert_allclose([a.sparse[t] for t in b.sparse], list(b.sparse.values()), atol=atol)
        assert a.colbert.shape == b.colbert.shape
        np.testing.assert_allclose(a.colbert, b.colbert, atol=atol)
        assert (a.n_tokens, a.truncated_tokens) == (b.n_tokens, b.truncated_tokens)


# ---- factor 1 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,method", [("xlmr", m) for m in ABSOLUTE] + [("modernbert", m) for m in ROPE]
                         + [("modernbert_local", m) for m in ("pi", "selfextend")])
def test_factor_one_is_the_plain_model(request, kind, method):
    plain = request.getfixturevalue(kind)
    enc = extended(plain, f"{method}:{plain.spec.max_length}")
    # a small budget: several batches, padded ones among them; and one text alone (no padding mask)
    assert_same(enc.encode(TEXTS, token_budget=200), plain.encode(TEXTS, token_budget=200))
    assert_same(enc.encode(TEXTS[2:3]), plain.encode(TEXTS[2:3]))


def test_the_model_is_restored_after_each_pass(xlmr, modernbert):
    emb = xlmr.model.embeddings.position_embeddings
    rotary = modernbert.model.rotary_emb
    freq = rotary.full_attention_inv_freq.clone()
    for plain, method in ((xlmr, "pi:504"), (modernbert, "yarn:256"), (modernbert, "selfextend:256")):
        enc = extended(plain, method)
        enc.encode(TEXTS)
        with enc.long_context.applied(plain.model):
            assert plain.model.config._attn_implementation == attn.ATTENTION_KEY
        assert plain.model.config._attn_implementation == "sdpa"
    assert xlmr.model.embeddings.position_embeddings is emb
    assert torch.equal(rotary.full_attention_inv_freq, freq) and rotary.full_attention_attention_scaling == 1.0
    assert not attn._ACTIVE


# ---- tables, ids, pooling rules ------------------------------------------------------------------

@pytest.mark.parametrize("factor", [1.0, 2.0, 4.5, 8.0])
def test_rope_tables_equal_transformers(factor):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    base, dim, window = 10000.0, 16, 64

    def config(**rope):
        return LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=window,
                           rope_parameters={"rope_theta": base, **rope})

    ref, _ = ROPE_INIT_FUNCTIONS["linear"](config(rope_type="linear", factor=factor), "cpu")
    torch.testing.assert_close(rope.pi_inv_freq(base, dim, factor), ref)
    n = int(window * factor)  # dynamic NTK at length n is NTK-aware scaling by factor*n/window - (factor-1)
    ref, _ = ROPE_INIT_FUNCTIONS["dynamic"](config(rope_type="dynamic", factor=factor), "cpu", seq_len=n)
    torch.testing.assert_close(rope.ntk_inv_freq(base, dim, factor * n / window - (factor - 1)), ref)
    ref, _ = ROPE_INIT_FUNCTIONS["dynamic"](config(rope_type="dynamic", factor=1.0), "cpu", seq_len=n)
    torch.testing.assert_close(rope.ntk_inv_freq(base, dim, factor), ref)
    for truncate in (True, False):
        ref, attention = ROPE_INIT_FUNCTIONS["yarn"](
            config(rope_type="yarn", factor=factor, original_max_position_embeddings=window, truncate=truncate), "cpu")
        mine, my_attention = rope.yarn_inv_freq(base, dim, factor, window, truncate=truncate)
        torch.testing.assert_close(mine, ref)
        assert my_attention == pytest.approx(attention)


def test_applied_rope_tables_are_transformers_for_the_model(modernbert):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    window = modernbert.spec.max_length
    rotary = modernbert.model.rotary_emb
    for method, rope, seq_len in (("pi", {"rope_type": "linear", "factor": 4.0}, None),
                                  ("ntk", {"rope_type": "dynamic", "factor": 1.0}, 4 * window),
                                  ("yarn", {"rope_type": "yarn", "factor": 4.0,
                                            "original_max_position_embeddings": window}, None)):
        ext = extended(modernbert, f"{method}:{4 * window}").long_context
        with ext.applied(modernbert.model):
            got, scale = rotary.full_attention_inv_freq.clone(), rotary.full_attention_attention_scaling
        config = copy.deepcopy(modernbert.model.config)
        config.rope_parameters["full_attention"].update(rope)
        ref, attention = ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, "cpu", seq_len=seq_len,
                                                                layer_type="full_attention")
        torch.testing.assert_close(got, ref)
        assert scale == pytest.approx(attention)


def test_rp_and_gp_position_ids(xlmr, modernbert):
    window = xlmr.spec.max_length  # 126; XLM-R numbers positions from padding_idx + 1 = 2
    length = 4 * window + 10
    rp = extended(xlmr, f"rp:{length}").long_context
    assert torch.equal(rp.position_ids(2, 600), (torch.arange(600) % window + 2).expand(2, 600))
    assert torch.equal(rope.rp_positions(600, window), torch.arange(600) % window)
    gp = extended(xlmr, f"gp:{length}").long_context
    s = math.ceil(length / window)
    assert s == 5 and torch.equal(gp.position_ids(1, 600)[0], torch.arange(600) // s + 2)
    assert int(gp.position_ids(1, length).max()) <= 2 + window - 1  # never past the learned table
    assert extended(xlmr, f"pi:{length}").long_context.position_ids(1, 600)[0].tolist() == list(range(2, 602))
    rope_window = modernbert.spec.max_length  # RoPE: the same ids, no offset; pi/ntk/yarn keep the model's own
    assert torch.equal(extended(modernbert, "rp:256").long_context.position_ids(1, 200)[0],
                       torch.arange(200) % rope_window)
    assert torch.equal(extended(modernbert, "gp:256").long_context.position_ids(1, 200)[0], torch.arange(200) // 4)
    assert extended(modernbert, "ntk:256").long_context.position_ids(1, 200) is None


def test_pi_interpolates_the_learned_table(xlmr):
    window = xlmr.spec.max_length
    old = xlmr.model.embeddings.position_embeddings.weight.detach().clone()
    ext = extended(xlmr, f"pi:{4 * window}").long_context
    with ext.applied(xlmr.model):
        new = xlmr.model.embeddings.position_embeddings.weight.detach().clone()
    assert new.shape == (2 + 4 * window, old.shape[1])
    torch.testing.assert_close(new[:2], old[:2])  # the rows XLM-R reserves (padding) are kept
    torch.testing.assert_close(new[2::4], old[2:2 + window])  # E_new[i*s] = E_old[i]
    torch.testing.assert_close(new[2 + 5], 0.75 * old[3] + 0.25 * old[4])  # linear in between
    torch.testing.assert_close(new[-1], old[2 + window - 1])  # past (L0-1)*s: the last row
    table = torch.randn(10, 3)
    odd = rope.interpolate_table(table, 25)  # non-integer factor 2.5: rows 0, 5, 10, ... are exact
    torch.testing.assert_close(odd[::5], table[::2])


def test_chunk_pools_the_separately_encoded_windows(xlmr):
    window = xlmr.spec.max_length
    text = " ".join(CORPUS[:40])
    [got] = extended(xlmr, f"chunk:{4 * window}").encode([text])
    [ids], [cut] = xlmr.tokenize([text], 4 * window)
    windows = lcx.split_windows(ids, window)
    assert len(windows) == 5 and all(len(w) <= window and (w[0], w[-1]) == (ids[0], ids[-1]) for w in windows)
    assert [t for w in windows for t in w[1:-1]] == ids[1:-1]
    parts = xlmr._encode_batch(windows, True, True, True)
    mean = np.mean([p.dense for p in parts], axis=0)
    np.testing.assert_allclose(got.dense, mean / np.linalg.norm(mean), atol=1e-6)
    want = {}
    for p in parts:
        for t, w in p.sparse.items():
            want[t] = max(w, want.get(t, 0.0))
    assert got.sparse.keys() == want.keys()
    np.testing.assert_allclose([got.sparse[t] for t in want], list(want.values()), atol=1e-6)
    np.testing.assert_allclose(got.colbert, np.concatenate([p.colbert for p in parts]), atol=1e-6)
    assert (got.n_tokens, got.truncated_tokens) == (4 * window, cut)


def test_chunk_repeats_the_prefix_in_every_window(xlmr):
    assert lcx.split_windows([0, 7, 8, 1, 2, 3, 4, 5, 9], window=6, prefix=2) == [
        [0, 7, 8, 1, 2, 9], [0, 7, 8, 3, 4, 9], [0, 7, 8, 5, 9]]
    spec = replace(xlmr.spec, document_prefix="Paris: ")
    enc = extended(xlmr, "chunk:500", spec=spec)
    prefix = xlmr.tokenizer("Paris:", add_special_tokens=False)["input_ids"]
    [ids], _ = enc.tokenize(["Paris: " + " ".join(CORPUS[:30])], 500)
    windows, _ = enc._windows([ids])  # the spec's document prefix
    assert len(windows) > 2 and all(w[1:1 + len(prefix)] == prefix for w in windows)


def test_mcls_inserts_cls_tokens_and_averages_their_states(xlmr):
    ids = [0, *range(10, 50), 2]
    new, at = lcx.insert_cls(ids, 16)
    assert at == [0, 17, 34] and [new[i] for i in at] == [0, 0, 0] and len(new) == len(ids) + 2
    assert [t for i, t in enumerate(new) if i not in at] == ids[1:]
    for length in (20, 64, 100):
        n = lcx.mcls_text_tokens(length, 16)
        assert len(lcx.insert_cls([0] + [5] * (n - 2) + [2], 16)[0]) <= length
        assert len(lcx.insert_cls([0] + [5] * (n - 1) + [2], 16)[0]) > length
    enc = extended(xlmr, f"mcls:{xlmr.spec.max_length},every=16")
    text = text_of(xlmr, 60)
    [got] = enc.encode([text])
    [ids], _ = xlmr.tokenize([text], 200)
    new, at = lcx.insert_cls(ids, 16)
    hidden, _, _ = xlmr.hidden_states([new])
    dense = hidden[0, at].mean(0)
    np.testing.assert_allclose(got.dense, (dense / dense.norm()).numpy(), atol=1e-5)
    keep = [i for i in range(1, len(new)) if i not in at]
    states = torch.nn.functional.normalize(xlmr.colbert_linear(hidden[0, keep]), dim=-1)
    np.testing.assert_allclose(got.colbert, states.detach().numpy(), atol=1e-5)
    assert got.n_tokens == len(ids) and got.colbert.shape[0] == len(ids) - 1


def test_mcls_on_a_mean_pooling_model_pools_by_mean_unless_told(xlmr):
    """A mean-pooling model's [CLS] state was never trained as an embedding: its mcls keeps the model's
    own pooling over the anchored input; pool=cls asks for BGE-M3's mean of [CLS] states anyway."""
    spec = replace(xlmr.spec, pooling="mean")
    mean_model = Encoder(xlmr.model, xlmr.tokenizer, spec, xlmr.sparse_linear, xlmr.colbert_linear, device="cpu")
    text = text_of(xlmr, 60)
    [ids], _ = xlmr.tokenize([text], 200)
    new, at = lcx.insert_cls(ids, 16)
    hidden, _, _ = xlmr.hidden_states([new])
    by = {"mean": hidden[0].mean(0), "cls": hidden[0, at].mean(0)}
    for pool in ("", ",pool=mean", ",pool=cls"):
        enc = extended(xlmr, f"mcls:{xlmr.spec.max_length},every=16{pool}", spec=spec)
        want = pool.rpartition("=")[2] or "mean"
        assert str(enc.long_context).endswith(f",every=16,pool={want}")
        [got] = enc.encode([text])
        np.testing.assert_allclose(got.dense, (by[want] / by[want].norm()).numpy(), atol=1e-5)
    assert not torch.allclose(by["mean"], by["cls"])
    # One [CLS] (a text under `every` tokens): the plain model, for either pooling
    short = text_of(xlmr, 14)
    for pool in ("mean", "cls"):
        enc = extended(xlmr, f"mcls:{xlmr.spec.max_length},every=16,pool={pool}", spec=spec)
        plain = mean_model if pool == "mean" else Encoder(xlmr.model, xlmr.tokenizer, xlmr.spec, xlmr.sparse_linear,
                                                          xlmr.colbert_linear, device="cpu")
        np.testing.assert_allclose(enc.encode([short])[0].dense, plain.encode([short])[0].dense, atol=1e-6)
    assert str(extended(xlmr, f"mcls:{xlmr.spec.max_length}").long_context).endswith(",pool=cls")


# ---- selfextend ----------------------------------------------------------------------------------

def _qkv(b=2, h=2, t=40, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g) for _ in range(3)]


def test_selfextend_with_a_wide_window_is_plain_attention():
    q, k, v = _qkv()
    inv_freq = rope.rope_inv_freq(10000.0, 16)
    mask = torch.ones(2, 1, 40, 40, dtype=torch.bool)
    mask[1, :, :, 30:] = False  # the second text is padded after 30 tokens
    plain = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
    got = attn.selfextend_attention(q, k, v, mask, 0.25, inv_freq, w=40, g=4, block_bytes=1)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)
    # group size 1: grouped distances are the exact ones, so any neighbour window gives plain attention
    got = attn.selfextend_attention(q, k, v, mask, 0.25, inv_freq, w=3, g=1, block_bytes=50_000)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)


def test_selfextend_matches_its_definition():
    q, k, v = _qkv(b=1, t=24)
    t, w, g = 24, 5, 3
    inv_freq = rope.rope_inv_freq(100.0, 16)
    pos = torch.arange(t)
    rq, rk = rope.rotate(q, pos, inv_freq), rope.rotate(k, pos, inv_freq)  # RoPE at positions 0..T-1

    def at(x, j, p):  # raw vector j, rotated to position p
        return rope.rotate(x[:, :, j:j + 1], torch.tensor([p]), inv_freq)[:, :, 0]

    logits = torch.empty(1, 2, t, t)
    shift = w - w // g
    for i in range(t):
        for j in range(t):
            if abs(i - j) < w:
                qp, kp = i, j
            else:  # distance sign(i-j) * (|i//g - j//g| + w - w//g)
                qp, kp = i // g + (shift if i > j else 0), j // g + (shift if j > i else 0)
            logits[:, :, i, j] = (at(q, i, qp) * at(k, j, kp)).sum(-1) * 0.25
    want = torch.softmax(logits, -1) @ v
    got = attn.selfextend_attention(rq, rk, v, None, 0.25, inv_freq, w, g, block_bytes=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_banded_attention_is_masked_sdpa():
    q, k, v = _qkv(t=300)
    pos = torch.arange(300)
    band = (pos[:, None] - pos[None, :]).abs() <= 8
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=band, scale=0.25)
    torch.testing.assert_close(attn.banded_attention(q, k, v, 8, 0.25, block=64), want, atol=1e-5, rtol=1e-5)


def test_selfextend_groups_keep_distances_inside_the_window(modernbert):
    window = modernbert.spec.max_length
    ext = extended(modernbert, f"selfextend:{8 * window}").long_context
    assert ext.w == window // 4 and lcx._farthest(8 * window, ext.w, ext.g) < window
    assert lcx._farthest(8 * window, ext.w, ext.g - 1) >= window  # the smallest such g
    assert str(ext) == f"selfextend:{8 * window},w={ext.w},g={ext.g}"
    with pytest.raises(InputError, match="beyond"):
        extended(modernbert, f"selfextend:{8 * window},w={window - 4},g=2")


# ---- long inputs, errors -------------------------------------------------------------------------

@pytest.mark.parametrize("kind,method", [("xlmr", m) for m in ("chunk", "mcls+pi", "mcls+rp", "pi", "rp", "gp")]
                         + [("modernbert", m) for m in ("chunk", "mcls+ntk", "pi", "rp", "gp", "ntk", "yarn",
                                                        "selfextend")]
                         + [("modernbert_local", m) for m in ("ntk", "selfextend")])
def test_long_input_is_encoded(request, kind, method):
    plain = request.getfixturevalue(kind)
    window = plain.spec.max_length
    enc = extended(plain, f"{method}:{4 * window}" + (",every=32" if method.startswith("mcls") else ""))
    text = text_of(plain, 3 * window)
    a, b = enc.encode([text + " Cats sleep.", text + " Qubits."])
    assert window < a.n_tokens <= enc.max_tokens and a.truncated_tokens == 0
    assert np.isfinite(a.dense).all() and abs(np.linalg.norm(a.dense) - 1) < 1e-5 and a.sparse
    if method != "chunk":
        assert a.colbert.shape == (a.n_tokens - 1, plain.colbert_dim)
    assert not np.allclose(a.dense, b.dense)  # the tokens past the native window count


@pytest.mark.parametrize("method", ["ntk:512", "yarn:512", "selfextend:512", "mcls+ntk:512"])
def test_rope_only_methods_refuse_an_absolute_model(xlmr, method):
    with pytest.raises(InputError, match="rotary position embeddings .RoPE.*use pi, rp or gp"):
        extended(xlmr, method)


@pytest.mark.parametrize("text,message", [
    ("pj:512", "unknown long-context method 'pj'; choose one of native, chunk"),
    ("pi", "needs a target length"), ("pi:abc", "not an integer"), ("pi:1", "at least 2"),
    ("chunk+pi:512", "only mcls combines"), ("mcls+chunk:512", "choose the position method"),
    ("pi:512,w=3", "selfextend's settings"), ("pi:512,every=3", "mcls's setting"), ("pi:512,x=1", "not understood"),
    ("pi:512,pool=cls", "pool= is mcls's setting"), ("mcls:512,pool=max", "choose cls .* or mean"),
])
def test_bad_syntax(text, message):
    with pytest.raises(InputError, match=message):
        LongContext.parse(text)


def test_syntax_round_trips():
    for text in ("pi:4096", "mcls+rp:4096,every=128", "mcls+pi:2048,every=256,pool=mean", "selfextend:8192,w=512,g=16", "native", "chunk:8192"):
        assert str(LongContext.parse(text)) == text
    assert LongContext.parse("PI", 4096) == LongContext("pi", 4096) == LongContext.parse("pi:4096", 4096)
    with pytest.raises(InputError, match="given twice"):
        LongContext.parse("pi:4096", 2048)


def test_model_dependent_errors(xlmr):
    with pytest.raises(InputError, match="native keeps .* window of 126 tokens.*chunk, mcls, pi, rp, gp\\)"):
        extended(xlmr, "native:512")
    with pytest.raises(InputError, match="mcls alone .* mcls\\+pi:512"):
        extended(xlmr, "mcls:512")
    with pytest.raises(InputError, match="below it"):
        extended(xlmr, "pi:100")
    enc = extended(xlmr, "pi:504")
    assert enc.spec.long_context == "pi:504" and xlmr.spec.long_context == ""
    assert enc.spec.fingerprint == xlmr.spec.fingerprint and enc.spec != xlmr.spec
    with pytest.raises(InputError, match="exceeds the long-context target"):
        enc.encode(["x"], max_length=600)


# ---- CLI and collections -------------------------------------------------------------------------

def test_cli_embed_and_errors(tiny_bgem3):
    runner = CliRunner()
    text = " ".join(CORPUS[:30])
    r = runner.invoke(main, ["embed", text, "--model", str(tiny_bgem3), "--long-context", "pi",
                             "--long-context-length", "504"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)[0]["colbert"]) == 503
    for args, message in ((["--long-context", "ntk:512"], "rotary position embeddings"),
                          (["--long-context", "pj"], "unknown long-context method 'pj'"),
                          (["--long-context-length", "512"], "needs a method too")):
        r = runner.invoke(main, ["embed", "x", "--model", str(tiny_bgem3), *args])
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_collection_records_the_method(tmp_path, tiny_bgem3, corpus):
    from hsearch.engine import open_collection

    runner = CliRunner()
    col = tmp_path / "col"
    r = runner.invoke(main, ["index", str(corpus), "-c", str(col), "--model", str(tiny_bgem3), "-q",
                             "--long-context", "pi:504"])
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(main, ["info", "-c", str(col)]).output)
    assert info["config"]["long_context"] == "pi:504"
    reopened = open_collection(col)
    assert reopened.encoder.spec.long_context == "pi:504" and reopened.encoder.max_tokens == 504
    long_doc = [{"id": "long", "text": text_of(reopened.encoder, 400)}]
    reopened.add(long_doc)
    views = np.concatenate([s.views for s in reopened.snapshot().segments])
    added = views[-(reopened.info()["chunks"] - info["chunks"]):]
    # passages of the model's window, and the whole document as one piece of up to 502 tokens
    assert (added == WHOLE).sum() == 1 and (added == PASSAGE).sum() > 1
    r = runner.invoke(main, ["index", str(corpus), "-c", str(col), "--model", str(tiny_bgem3), "-q",
                             "--long-context", "rp:504"])
    assert r.exit_code != 0 and "other settings (long_context)" in r.output
    r = runner.invoke(main, ["eval", "--synthetic", "passkey", "--lengths", "256", "--model", str(tiny_bgem3),
                             "--long-context", "yarn:512"])
    assert r.exit_code != 0 and "rotary position embeddings" in r.output and "Traceback" not in r.output
