"""Export a model folder once into an ONNX Runtime folder in the cache, so queries run without torch.

The graph is the transformer from its input embeddings to its last hidden states; the word-embedding
table stays outside it as a memory-mapped `embeddings.npy`, so opening the graph reads ~85 MB (e5-small)
instead of ~470 MB and a query touches only its own rows. The heads are plain matrices (`*.npy`),
applied in numpy. Folder layout (`runtime.json` is written last; the folder is built under a temporary
name and renamed, so a reader sees a complete folder or none, and two processes exporting at once leave
one good copy):
    graph.fp32.onnx (+ .data)   the transformer, written by hsearch/encode/onnx_graph.py with fused attention for
                                BERT-family models, else by torch.onnx.export (dynamo)
    graph.int8.onnx (+ .data)   onnx_graph's int8 graph (SmoothQuant, calibrated on hsearch/data/calibration.txt),
                                written beside it; for other models (or one this int8 does not suit: the check
                                below), ONNX Runtime's dynamic quantisation of the fp32 graph, made on first use
    embeddings.npy              (vocab, hidden) float32
    tokenizer.json              the tokenizer as transformers runs it (its backend's pipeline)
    lexicon_*                   a Unigram tokenizer's pieces, sorted, for short texts (hsearch/encode/lexicon.py)
    sparse_w.npy, sparse_b.npy, colbert_w.npy, colbert_b.npy   the heads, where the model has them
    runtime.json                the EncoderSpec, the tokenizer's special ids, file sizes, the export check
The export is checked before it is kept: the graph's hidden states must equal torch's on a probe batch
(padded, two lengths) within `TOLERANCE`; a model that fails this, or cannot be exported, stays on torch.
The int8 graph must keep a pooled cosine of `INT8_MIN_COSINE` to torch on the probe, or it is not kept.
The cache is keyed by the folder, its fingerprint and its weight files' sizes and mtimes: a changed
model gets a new export, and a missing, partial or corrupt one is rebuilt (hsearch/encode/onnx_encoder.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hsearch.errors import ModelError

from .lexicon import write_lexicon

log = logging.getLogger("hsearch")

EXPORT_FORMAT = 3  # 2: the lexicon files; 3: graphs written by hsearch/encode/onnx_graph.py, int8 at export
MARKER = "runtime.json"
GRAPHS = {"fp32": "graph.fp32.onnx", "int8": "graph.int8.onnx"}
# the int8 graph's pooled output against torch on the probe: below it, the graph is not kept (e5-small: 0.9998;
# ONNX Runtime's plain dynamic quantisation of it stayed below that on SciFact train texts, in an ad hoc check)
INT8_MIN_COSINE = 0.998
CALIBRATION = Path(__file__).resolve().parents[1] / "data" / "calibration.txt"
TOLERANCE = 1e-3  # max |torch - onnx| over real tokens' hidden states, float32 (each export records its own in runtime.json: max_abs_diff)
PROBE = ["query: how much do cats sleep?",
         "passage: Cats sleep between twelve and sixteen hours a day; kittens sleep even more, and old cats too."]


class ExportError(ModelError):
    """The model could not be exported to ONNX (or its graph disagrees with torch): it stays on torch."""


def cache_root() -> Path:
    root = Path(os.environ.get("HSEARCH_CACHE") or Path.home() / ".cache" / "hsearch")
    return root / "onnx"


def export_dir(folder: Path, fingerprint: str) -> Path:
    """Where `folder`'s export lives: named by the model and a key over what its graph is made from."""
    h = hashlib.sha256(f"{EXPORT_FORMAT}|{Path(folder).resolve()}|{fingerprint}".encode())
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".pt", ".json"):
            st = f.stat()
            h.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(folder).name)[-60:]
    return cache_root() / f"{name}-{h.hexdigest()[:16]}"


def export(encoder, out: Path) -> Path:
    """Export a loaded torch `Encoder` (fp32, CPU, no long-context method) into `out`, atomically."""
    import torch

    if encoder.precision != "fp32" or encoder.device != "cpu" or encoder.long_context is not None:
        raise ExportError("export needs the fp32 CPU encoder without a long-context method")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        table = encoder.model.get_input_embeddings().weight.detach().float().cpu().numpy()
        np.save(tmp / "embeddings.npy", np.ascontiguousarray(table))
        body = _body(encoder.model).eval()
        ids, mask = _probe(encoder)
        try:
            with torch.inference_mode(False), torch.no_grad():
                reference = body(torch.from_numpy(table[ids]), torch.from_numpy(mask)).numpy()
        except Exception as e:  # noqa: BLE001 - a model that cannot run from input embeddings stays on torch
            raise ExportError(f"could not export {encoder.spec.name}: it does not run from input embeddings "
                              f"({type(e).__name__}: {str(e)[:200]})") from e
        graph, diff, int8 = _write_graphs(encoder, body, table, ids, mask, reference, tmp)
        heads = {}
        for name, lin in (("sparse", encoder.sparse_linear), ("colbert", encoder.colbert_linear)):
            if lin is not None:
                np.save(tmp / f"{name}_w.npy", lin.weight.detach().float().cpu().numpy())
                np.save(tmp / f"{name}_b.npy", (lin.bias.detach().float().cpu().numpy() if lin.bias is not None
                                                else np.zeros(lin.out_features, np.float32)))
                heads[name] = int(lin.out_features)
        tok = encoder.tokenizer
        # the pipeline transformers really runs: v5 rebuilds some tokenizers (XLM-R's) from their class instead
        # of taking tokenizer.json as it is, so the file in the model folder can tokenise differently
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None:
            backend.save(str(tmp / "tokenizer.json"))
        else:
            shutil.copy2(Path(encoder.spec.extra["folder"]) / "tokenizer.json", tmp / "tokenizer.json")
        probe = PROBE[1]  # the ids the post-processor adds around a text, for the lexicon path
        write_lexicon(json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8")), tmp,
                      tok(probe, add_special_tokens=True)["input_ids"], tok(probe, add_special_tokens=False)["input_ids"])
        spec = {k: v for k, v in asdict(encoder.spec).items() if k not in ("extra", "fusion_weights")}
        meta = {"format": EXPORT_FORMAT, "spec": spec, "provenance": encoder.spec.extra.get("provenance", ""),
                "special_ids": {n: getattr(tok, f"{n}_token_id", None) for n in ("cls", "eos", "sep", "pad", "unk", "bos")},
                "model_input_names": list(getattr(tok, "model_input_names", [])),
                "hidden": encoder.dim, "heads": heads, "max_abs_diff": diff, "torch": torch.__version__,
                "graph": graph, "int8": int8}
        meta["files"] = {f.name: f.stat().st_size for f in tmp.iterdir()}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(out)
        except OSError:  # another process exported it first: keep theirs
            if not (out / MARKER).exists():
                raise
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_graphs(encoder, body, table, ids, mask, reference, tmp: Path) -> tuple[str, float, dict | None]:
    """graph.fp32.onnx (and, for BERT-family models, graph.int8.onnx) in `tmp`, checked against torch.

    Returns which writer made them, the fp32 graph's max |difference| from torch, and how the int8 graph
    was made and how close it stayed (None when none was written here: int8 then falls back to dynamic
    quantisation of the fp32 graph on first use)."""
    from . import onnx_graph

    try:
        cfg, weights = onnx_graph.bert_weights(encoder.model)
        _save(onnx_graph.build(cfg, weights), tmp / GRAPHS["fp32"])
        diff = _check(tmp / GRAPHS["fp32"], table[ids], mask, reference)
    except Exception as e:  # noqa: BLE001 - not a model the builder knows, or ONNX Runtime refused its graph
        level = logging.INFO if isinstance(e, onnx_graph.GraphError) else logging.WARNING
        log.log(level, "writing %s's graph by hand did not work (%s: %s); using torch.onnx.export",
                encoder.spec.name, type(e).__name__, e)
        for f in tmp.glob("graph.*"):
            f.unlink()
        _export_torch(encoder, body, table, ids, mask, tmp)
        try:
            return "torch.onnx.export", _check(tmp / GRAPHS["fp32"], table[ids], mask, reference), None
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - ONNX Runtime could not run the graph (an operator it lacks, ...)
            raise ExportError(f"could not run {encoder.spec.name}'s exported graph in ONNX Runtime "
                              f"({type(e).__name__}: {str(e)[:200]})") from e
    try:
        return "hsearch", diff, _write_int8(encoder, cfg, weights, table, ids, mask, reference, tmp)
    except Exception as e:  # noqa: BLE001 - the fp32 graph is good; int8 then comes from dynamic quantisation
        log.warning("the int8 graph of %s could not be made (%s: %s); int8 will use dynamic quantisation",
                    encoder.spec.name, type(e).__name__, e)
        for f in tmp.glob(GRAPHS["int8"] + "*"):
            f.unlink()
        return "hsearch", diff, None


def _write_int8(encoder, cfg, weights, table, ids, mask, reference, tmp: Path) -> dict | None:
    from . import onnx_graph
    from .precision import cpu_has_vnni

    taps = tmp / ".taps.onnx"
    try:
        _save(onnx_graph.build(cfg, weights, taps=True), taps)
        amax = onnx_graph.calibrate(taps, cfg, _calibration_batches(encoder, table))
    finally:
        for f in tmp.glob(".taps.onnx*"):
            f.unlink()
    bits = 8 if cpu_has_vnni() else 7
    _save(onnx_graph.build(cfg, weights, smooth=onnx_graph.smoothing(weights, amax), weight_bits=bits), tmp / GRAPHS["int8"])
    cos = _pooled_cosine(tmp / GRAPHS["int8"], encoder.spec.pooling, table[ids], mask, reference)
    if not cos >= INT8_MIN_COSINE:  # a model this recipe does not suit
        log.warning("the int8 graph of %s is too far from fp32 (cosine %.4f < %g); int8 will use dynamic quantisation",
                    encoder.spec.name, cos, INT8_MIN_COSINE)
        for f in tmp.glob(GRAPHS["int8"] + "*"):
            f.unlink()
        return None
    return {"recipe": f"SmoothQuant alpha {onnx_graph.SMOOTH_ALPHA}, calibration.txt", "weight_bits": bits,
            "probe_cosine": cos}


def _export_torch(encoder, body, table, ids, mask, tmp: Path) -> None:
    """graph.fp32.onnx by torch.onnx.export (dynamo): any model transformers runs, unfused."""
    import torch

    embeds, mask_t = torch.from_numpy(table[ids]), torch.from_numpy(mask)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    try:
        with torch.inference_mode(False), torch.no_grad(), _quiet():
            program = torch.onnx.export(
                body, (embeds, mask_t), dynamo=True, external_data=True, verbose=False,
                input_names=["inputs_embeds", "attention_mask"], output_names=["hidden"],
                dynamic_shapes={"inputs_embeds": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
            program.save(str(tmp / GRAPHS["fp32"]), external_data=True)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; any means "stay on torch"
        raise ExportError(f"could not export {encoder.spec.name} to ONNX ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e


def _save(model, path: Path) -> None:
    """One graph file and its weights beside it (`<name>.data`): protobuf cannot hold more than 2 GB."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


def _calibration_batches(encoder, table: np.ndarray):
    """The calibration texts (hsearch/data/calibration.txt), each as its own batch, with the model's prefixes."""
    spec = encoder.spec
    for line in CALIBRATION.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, text = line.split("\t", 1)
        prefix = spec.query_prefix if kind == "query" else spec.document_prefix
        ids = np.asarray(encoder.tokenize([prefix + text], encoder.spec.max_length)[0][0], np.int64)
        yield np.ascontiguousarray(table[ids][None]), np.ones((1, len(ids)), np.int64)


def _pooled_cosine(graph: Path, pooling: str, embeds: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    """The worst cosine between the graph's pooled output (the model's own pooling) and torch's, over the probe."""
    import onnxruntime as ort

    got = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(
        None, {"inputs_embeds": embeds, "attention_mask": mask})[0]
    if pooling == "cls":
        a, b = got[:, 0], reference[:, 0]
    else:
        m = mask[..., None].astype(np.float32)
        a, b = (got * m).sum(1), (reference * m).sum(1)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


@contextmanager
def _quiet():
    """The exporter's warnings and progress notes (torchvision missing, axis names) are not the user's business."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnx_ir", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_int8(folder: Path) -> Path:
    """The int8 graph: the one export wrote (BERT-family models), else ONNX Runtime's dynamic quantisation of
    graph.fp32.onnx (per output channel), made here on first use."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / GRAPHS["int8"]
    if target.exists():
        return target
    fd, name = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        with _quiet():  # its advice to pre-process the model is logged on the root logger
            logging.disable(logging.WARNING)
            try:
                # DefaultTensorType: shape inference cannot type the outputs of the contrib operators
                # (MultiHeadAttention, ...) of a hand-written graph; every tensor here is float32
                quantize_dynamic(str(folder / GRAPHS["fp32"]), name, weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": 1})
            finally:
                logging.disable(logging.NOTSET)
        os.replace(name, target)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    return target


def _body(model):
    """The transformer from input embeddings to last hidden states: the graph that is exported."""
    import torch

    class Body(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, inputs_embeds, attention_mask):
            return self.m(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    return Body(model)


def _probe(encoder) -> tuple[np.ndarray, np.ndarray]:
    """Two texts of different lengths, padded: a batch shape that is neither 1 nor a constant of the model."""
    ids = [encoder.tokenize([t], encoder.spec.max_length)[0][0] for t in PROBE]
    width = max(len(x) for x in ids)
    pad = encoder.tokenizer.pad_token_id or 0
    arr = np.full((len(ids), width), pad, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, x in enumerate(ids):
        arr[r, :len(x)], mask[r, :len(x)] = x, 1
    return arr, mask


def _check(graph: Path, embeds: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    worst = 0.0
    for rows in (slice(None), slice(0, 1)):  # the padded batch, and one text alone at its own length
        n = int(mask[rows].sum(1).max())
        got = sess.run(None, {"inputs_embeds": embeds[rows, :n], "attention_mask": mask[rows, :n]})[0]
        real = mask[rows, :n].astype(bool)
        worst = max(worst, float(np.abs(got - reference[rows, :n])[real].max()))
    if not np.isfinite(worst) or worst > TOLERANCE:
        raise ExportError(f"the exported graph disagrees with torch (max |difference| {worst:.2e} > {TOLERANCE})")
    return worst
