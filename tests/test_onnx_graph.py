"""The hand-written ONNX graph (hsearch/encode/onnx_graph.py) against transformers' own forward pass:
BERT (positions from 0, token types) and XLM-R (positions from padding_idx + 1), padded batches, fp32 and int8."""
import math

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from hsearch.encode import onnx_graph  # noqa: E402


def _tiny(kind: str):
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    args = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64)
    model = (BertModel(BertConfig(**args)) if kind == "bert" else XLMRobertaModel(XLMRobertaConfig(**args)))
    return model.eval()


def _run(graph, embeds, mask):
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["hidden"], {"inputs_embeds": embeds, "attention_mask": mask})[0]


def _batch(model, lengths, seed=1):
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = rng.integers(5, 100, (len(lengths), width))
    mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(np.int64)
    embeds = model.get_input_embeddings().weight.detach().numpy()[ids]
    with torch.no_grad():
        ref = model(inputs_embeds=torch.from_numpy(embeds), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    return embeds.astype(np.float32), mask, ref


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta"])
def test_the_fp32_graph_equals_transformers_on_padded_batches(kind):
    model = _tiny(kind)
    cfg, weights = onnx_graph.bert_weights(model)
    assert cfg["offset"] == (0 if kind == "bert" else 2)  # XLM-R's positions start after padding_idx 1
    graph = onnx_graph.build(cfg, weights)
    assert {n.op_type for n in graph.graph.node} >= {"MultiHeadAttention", "SkipLayerNormalization", "BiasGelu"}
    embeds, mask, ref = _batch(model, [7, 3, 12])
    got = _run(graph, embeds, mask)
    real = mask.astype(bool)
    assert np.abs(got - ref)[real].max() < 1e-5  # padding rows are never read
    alone = _run(graph, embeds[1:2, :3], mask[1:2, :3])  # one text at its own length
    assert np.abs(alone - ref[1:2, :3]).max() < 1e-5


def test_models_it_does_not_write_are_refused():
    model = _tiny("bert")
    model.config.hidden_act = "gelu_new"  # the tanh approximation: BiasGelu is the exact one
    with pytest.raises(onnx_graph.GraphError):
        onnx_graph.bert_weights(model)
    from transformers import ElectraConfig, ElectraModel

    other = ElectraModel(ElectraConfig(vocab_size=50, hidden_size=32, embedding_size=16, num_hidden_layers=1,
                                       num_attention_heads=4, intermediate_size=64))
    with pytest.raises(onnx_graph.GraphError):  # BERT-like names, but an embedding projection the graph lacks
        onnx_graph.bert_weights(other)


def test_the_gelu_shift_makes_every_gelu_output_non_negative():
    xs = np.linspace(-6, 6, 200001)
    gelu = xs * 0.5 * (1 + np.vectorize(math.erf)(xs / math.sqrt(2)))
    assert gelu.min() + onnx_graph.GELU_MIN > 0
    assert gelu.min() + onnx_graph.GELU_MIN < 1e-3  # and wastes almost none of the 256 levels


@pytest.mark.parametrize("bits", [8, 7])  # 7: the weights of CPUs without VNNI
def test_the_int8_graph_stays_close_to_fp32_on_the_bundled_model(tmp_path, bits):
    """The real e5-small weights (its outlier channels are what SmoothQuant is for), calibrated as the export does."""
    from hsearch.encode import load_encoder
    from hsearch.encode.onnx_export import _calibration_batches, _save

    enc = load_encoder("e5-small")
    cfg, weights = onnx_graph.bert_weights(enc.model)
    table = enc.model.get_input_embeddings().weight.detach().numpy()
    _save(onnx_graph.build(cfg, weights, taps=True), tmp_path / "taps.onnx")
    amax = onnx_graph.calibrate(tmp_path / "taps.onnx", cfg, _calibration_batches(enc, table))
    assert set(amax) == {f"{i}.{p}_w" for i in range(cfg["layers"]) for p in onnx_graph.SMOOTHED}
    smooth = onnx_graph.smoothing(weights, amax)
    fp32, int8 = onnx_graph.build(cfg, weights), onnx_graph.build(cfg, weights, smooth=smooth, weight_bits=bits)
    assert sum(n.op_type == "MatMulInteger" for n in int8.graph.node) == cfg["layers"]  # the GELU-fed products
    texts = ["passage: Die Katze schläft sechzehn Stunden am Tag.", "query: what do bees eat?",
             "passage: Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. " * 6]
    ids = [enc.tokenize([t], 512)[0][0] for t in texts]
    width = max(map(len, ids))
    tokens = np.ones((len(ids), width), np.int64)
    mask = np.zeros((len(ids), width), np.int64)
    for r, x in enumerate(ids):
        tokens[r, :len(x)], mask[r, :len(x)] = x, 1
    a, b = _run(fp32, table[tokens], mask), _run(int8, table[tokens], mask)
    m = mask[..., None].astype(np.float32)
    pa, pb = (a * m).sum(1), (b * m).sum(1)
    cos = (pa * pb).sum(1) / np.linalg.norm(pa, axis=1) / np.linalg.norm(pb, axis=1)
    assert cos.min() > 0.999  # plain dynamic int8 (one scale per tensor) stayed below 0.998 on SciFact train texts
    real = mask.astype(bool)
    tok = (a * b).sum(-1)[real] / np.linalg.norm(a, axis=-1)[real] / np.linalg.norm(b, axis=-1)[real]
    assert tok.mean() > 0.998
