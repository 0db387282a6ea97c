"""Write the ONNX graph of a BERT-family encoder by hand, with ONNX Runtime's fused operators.

torch.onnx.export writes attention as a dozen small operators per layer (a `Where` over every score
to apply the padding mask, an `IsNaN` guard, transposes); on this CPU they took a large share of a
batch's time next to the matrix products, and ONNX Runtime's transformer optimizer does not recognise
them as attention. This module writes the graph from the weights instead,
a layer as nine nodes in fp32: the Q/K/V product and its split, `MultiHeadAttention` (com.microsoft,
with the key padding mask and the Q/K/V biases), the output product, `SkipLayerNormalization`
(residual, bias and LayerNorm in one), the feed-forward products with `BiasGelu`, and a second
`SkipLayerNormalization`. The caller checks it against torch like any export.

Two graphs come from one model:
    fp32  `build(cfg, w)`: MatMul on the float32 weights; equals torch within 2e-6 on e5-small.
    int8  `build(cfg, w, smooth=...)`: every product on int8 weights (symmetric, one scale per output
          channel) and uint8 activations (one scale per tensor, as ONNX Runtime's dynamic quantisation),
          with two fixes that keep it closer to fp32 (benchmarks/RESULTS.md, "Hand-written ONNX graphs"):
          the products fed by a LayerNorm (Q/K/V and the first feed-forward one) divide their input by
          per-channel factors that move its outlier channels into the weights (SmoothQuant, alpha 0.75,
          factors from `calibrate`); the product fed by the GELU quantises each row on its own over
          0..255, after adding GELU's lower bound (the shift comes back out through the bias). The
          attention output product is plain dynamic int8 (per tensor): it lost least to plain int8 in
          the comparison on training data that chose this recipe.
Supported: BertModel, RobertaModel and XLMRobertaModel (post-LayerNorm, absolute positions, the exact
(erf) GELU); `bert_weights` raises GraphError for anything else, and the caller keeps torch's export.
On x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in saturating 16-bit
lanes (255 * 127 * 2 overflows), so there the weights use 7 bits (`weight_bits`).
"""
from __future__ import annotations

import numpy as np

from hsearch.errors import ModelError
from hsearch.index.kernels import symmetric_int8

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: older ONNX Runtimes refuse the newer IR that onnx would write by default
MODELS = ("BertModel", "RobertaModel", "XLMRobertaModel")
SMOOTH_ALPHA = 0.75  # SmoothQuant's migration strength: chosen over 0.5 on SciFact *train* queries and documents
GELU_MIN = 0.17  # erf GELU is >= -0.16997 (at x = -0.752): adding this makes its output non-negative
# the products (Q/K/V, attention output, feed-forward in "fi", out "fo") whose input is a LayerNorm's output
SMOOTHED = ("qkv", "fi")


class GraphError(ModelError):
    """The model is not one this builder writes (the caller falls back to torch.onnx.export)."""


def bert_weights(model) -> tuple[dict, dict]:
    """The config and float32 weights of a transformers BERT-family model (BertModel, XLMRobertaModel, ...)."""
    cfg = model.config
    if type(model).__name__ not in MODELS:
        raise GraphError(f"{type(model).__name__} is not one of {', '.join(MODELS)}")
    if getattr(cfg, "hidden_act", None) != "gelu":
        raise GraphError(f"hidden_act {getattr(cfg, 'hidden_act', None)!r} is not the exact GELU")
    if getattr(cfg, "position_embedding_type", None) not in (None, "absolute"):
        raise GraphError("only absolute position embeddings are supported")
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        raise GraphError("only encoders are supported")
    emb, encoder = getattr(model, "embeddings", None), getattr(model, "encoder", None)
    if emb is None or encoder is None or not hasattr(encoder, "layer"):
        raise GraphError(f"{type(model).__name__} is not a BERT-family model")
    if cfg.hidden_size % cfg.num_attention_heads:
        raise GraphError("the hidden size is not a multiple of the number of heads")

    def arr(t):
        return t.detach().float().cpu().numpy()

    try:
        types = getattr(emb, "token_type_embeddings", None)
        # RoBERTa and XLM-R number positions from padding_idx + 1 (transformers does so for inputs_embeds too)
        pad = getattr(emb, "padding_idx", None)
        offset = int(pad) + 1 if pad is not None else 0
        w = {"pos_type": arr(emb.position_embeddings.weight) + (arr(types.weight)[0] if types is not None else 0),
             "emb_ln_g": arr(emb.LayerNorm.weight), "emb_ln_b": arr(emb.LayerNorm.bias)}
        for i, layer in enumerate(encoder.layer):
            att, sa = layer.attention, layer.attention.self
            if getattr(sa, "all_head_size", cfg.hidden_size) != cfg.hidden_size:
                raise GraphError("the attention width differs from the hidden size")
            w[f"{i}.qkv_w"] = np.concatenate([arr(sa.query.weight), arr(sa.key.weight), arr(sa.value.weight)])
            w[f"{i}.qkv_b"] = np.concatenate([arr(sa.query.bias), arr(sa.key.bias), arr(sa.value.bias)])
            w[f"{i}.ao_w"], w[f"{i}.ao_b"] = arr(att.output.dense.weight), arr(att.output.dense.bias)
            w[f"{i}.ln1_g"], w[f"{i}.ln1_b"] = arr(att.output.LayerNorm.weight), arr(att.output.LayerNorm.bias)
            w[f"{i}.fi_w"], w[f"{i}.fi_b"] = arr(layer.intermediate.dense.weight), arr(layer.intermediate.dense.bias)
            w[f"{i}.fo_w"], w[f"{i}.fo_b"] = arr(layer.output.dense.weight), arr(layer.output.dense.bias)
            w[f"{i}.ln2_g"], w[f"{i}.ln2_b"] = arr(layer.output.LayerNorm.weight), arr(layer.output.LayerNorm.bias)
    except (AttributeError, TypeError) as e:  # a layer without the BERT names (or without biases)
        raise GraphError(f"{type(model).__name__}'s layers are not BERT's ({e})") from None
    c = {"layers": len(encoder.layer), "hidden": int(cfg.hidden_size), "heads": int(cfg.num_attention_heads),
         "eps": float(cfg.layer_norm_eps), "offset": offset}
    return c, w


def smoothing(w: dict, amax: dict, alpha: float = SMOOTH_ALPHA) -> dict:
    """SmoothQuant's per-input-channel factors s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) for the smoothed products."""
    out = {}
    for name, a in amax.items():
        if name.split(".")[1][:-2] in SMOOTHED:
            wmax = np.maximum(np.abs(w[name]).max(0), 1e-5)
            out[name] = np.clip(np.maximum(a, 1e-5) ** alpha / wmax ** (1 - alpha), 1e-2, 1e3).astype(np.float32)
    return out


def calibrate(taps_graph, cfg: dict, batches) -> dict:
    """max |input| per channel of each smoothed product (name of its weight -> vector), over `batches` of
    (inputs_embeds, attention_mask) run through `taps_graph` (the path of `build(..., taps=True)` saved;
    a path, because a large model's graph cannot be one protobuf); padding rows are left out."""
    import onnxruntime as ort

    weights = [f"{i}.{p}_w" for i in range(cfg["layers"]) for p in SMOOTHED]
    session = ort.InferenceSession(str(taps_graph), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()][1:]
    amax = {}
    for embeds, mask in batches:
        outs = session.run(names, {"inputs_embeds": embeds, "attention_mask": mask})
        real = mask.astype(bool)
        for name, x in zip(weights, outs):
            m = np.abs(x[real]).max(0)
            amax[name] = np.maximum(amax[name], m) if name in amax else m
    return amax


def build(cfg: dict, w: dict, smooth: dict | None = None, taps: bool = False, weight_bits: int = 8):
    """The encoder graph: inputs_embeds (batch, seq, hidden) float32, attention_mask (batch, seq) int64 -> hidden.

    `smooth` (from `smoothing`) makes the int8 graph, its weights in `weight_bits` (7 where the CPU has no
    VNNI, see the module's docstring); without it the products are fp32. `taps` adds the input of every
    smoothed product as an output (for `calibrate`)."""
    from onnx import TensorProto, helper, numpy_helper

    h, eps, int8 = cfg["hidden"], cfg["eps"], smooth is not None
    nodes, inits, outputs, names, bias_fix = [], [], [], set(), {}

    def const(name, value):
        if name not in names:  # small shared constants are named by value and written once
            names.add(name)
            inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op, inputs, outs, domain="", **attrs):
        nodes.append(helper.make_node(op, inputs, outs, name=outs[0], domain=domain, **attrs))
        return outs[0]

    def matmul(x, name, out):
        weight = w[name]  # [N, K], torch.nn.Linear's layout
        if taps and name.split(".")[1][:-2] in SMOOTHED:
            outputs.append(x)
        if not int8:
            return node("MatMul", [x, const(name + ".t", weight.T)], [out])
        if name in smooth:
            x = node("Mul", [x, const(name + ".inv_s", 1 / smooth[name])], [out + ".smooth"])
            weight = weight * smooth[name][None, :]
        wq, scale = symmetric_int8(weight, weight_bits)  # per output channel
        if not name.endswith("fo_w"):
            return node("DynamicQuantizeMatMul", [x, const(name + ".q8", wq.T), const(name + ".s8", scale),
                                                  const(name + ".z8", np.zeros(len(scale), np.int8))], [out],
                        domain="com.microsoft")
        # the GELU's output: shifted to >= 0, each row on its own scale over 0..255
        bias_fix[name] = -GELU_MIN * (wq.astype(np.float64) * scale[:, None]).sum(1)
        k, n = weight.shape[1], weight.shape[0]
        flat = node("Reshape", [x, const(f"rows_of_{k}", np.array([-1, k], np.int64))], [out + ".flat"])
        flat = node("Add", [flat, const("gelu_min", np.array(GELU_MIN, np.float32))], [out + ".shift"])
        top = node("Max", [node("ReduceMax", [flat], [out + ".amax"], axes=[1], keepdims=0),
                           const("tiny", np.array(1e-12, np.float32))], [out + ".top"])
        step = node("Div", [top, const("c255", np.array(255, np.float32))], [out + ".step"])
        q = node("QuantizeLinear", [flat, step], [out + ".q"], axis=0)
        y = node("Cast", [node("MatMulInteger", [q, const(name + ".q8", wq.T)], [out + ".acc"])], [out + ".accf"],
                 to=TensorProto.FLOAT)
        y = node("Mul", [y, node("Unsqueeze", [step, const("axis1", np.array([1], np.int64))], [out + ".col"])], [out + ".r"])
        y = node("Mul", [y, const(name + ".s8", scale)], [out + ".rs"])
        shape = node("Concat", [node("Shape", [x], [out + ".xs"], start=0, end=2),
                                const(f"width_{n}", np.array([n], np.int64))], [out + ".shape"], axis=0)
        return node("Reshape", [y, shape], [out])

    # embeddings: the word vectors come in; add positions (+ token type 0) and normalise
    seq = node("Shape", ["inputs_embeds"], ["seq"], start=1, end=2)
    off = const("offset", np.array([cfg["offset"]], np.int64))
    end = node("Add", [seq, off], ["pos_end"])
    pos = node("Slice", [const("pos_type", w["pos_type"]), off, end, const("axis0", np.array([0], np.int64))], ["pos"])
    x = node("Add", ["inputs_embeds", pos], ["emb_sum"])
    x = node("LayerNormalization", [x, const("emb_ln_g", w["emb_ln_g"]), const("emb_ln_b", w["emb_ln_b"])], ["emb"],
             axis=-1, epsilon=eps)
    mask = node("Cast", ["attention_mask"], ["mask32"], to=TensorProto.INT32)
    split = const("qkv_split", np.array([h, h, h], np.int64))
    for i in range(cfg["layers"]):
        p = f"{i}."
        qkv = matmul(x, p + "qkv_w", p + "qkv")
        node("Split", [qkv, split], [p + "q", p + "k", p + "v"], axis=2)
        ctx = node("MultiHeadAttention", [p + "q", p + "k", p + "v", const(p + "qkv_b", w[p + "qkv_b"]), mask],
                   [p + "ctx"], domain="com.microsoft", num_heads=cfg["heads"])
        a = matmul(ctx, p + "ao_w", p + "ao")
        x1 = node("SkipLayerNormalization", [a, x, const(p + "ln1_g", w[p + "ln1_g"]), const(p + "ln1_b", w[p + "ln1_b"]),
                                             const(p + "ao_b", w[p + "ao_b"])], [p + "x1"], domain="com.microsoft", epsilon=eps)
        f = node("BiasGelu", [matmul(x1, p + "fi_w", p + "fi"), const(p + "fi_b", w[p + "fi_b"])], [p + "gelu"],
                 domain="com.microsoft")
        o = matmul(f, p + "fo_w", p + "fo")
        fo_b = (w[p + "fo_b"] + bias_fix.get(p + "fo_w", 0)).astype(np.float32)
        x = node("SkipLayerNormalization", [o, x1, const(p + "ln2_g", w[p + "ln2_g"]), const(p + "ln2_b", w[p + "ln2_b"]),
                                            const(p + "fo_b", fo_b)], [p + "x2"], domain="com.microsoft", epsilon=eps)
    nodes.append(helper.make_node("Identity", [x], ["hidden"], name="hidden"))
    graph = helper.make_graph(
        nodes, "hsearch_encoder",
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "seq", h]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", h])]
        + [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
                             producer_name="hsearch", ir_version=IR_VERSION)
