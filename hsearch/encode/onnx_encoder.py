"""The ONNX Runtime encoder: the same outputs as the torch `Encoder`, without importing torch or transformers.

It reads a folder made by hsearch/encode/onnx_export.py: the graph (fp32, or int8 quantised from it),
the word-embedding table (memory-mapped: a query reads only its own rows), the heads as matrices and
the spec. Tokenising, batching and the per-text outputs are `TextEncoder`'s, shared with torch; the
heads run in numpy exactly as the torch encoder runs them (the sparse head in float64). Long-context
methods stay on torch. `load_onnx_encoder` makes the export on first use (that one call needs torch)
and rebuilds a missing, partial or corrupt one.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np

from hsearch.errors import ModelError
from hsearch.storage import arrays

from .base import EncoderSpec, TextEncoder
from .onnx_export import (
    EXPORT_FORMAT,
    GRAPHS,
    MARKER,
    ExportError,
    export,
    export_dir,
    quantize_int8,
)
from .tokenizer import FastTokenizer

log = logging.getLogger("hsearch")


class OnnxEncoder(TextEncoder):
    runtime = "onnx"

    def __init__(self, folder: Path, model_dir: Path, precision: str = "fp32", threads: int | None = None,
                 fusion_weights: dict | None = None):
        import onnxruntime as ort

        meta = _read_meta(folder)
        self.folder, self.precision = folder, precision
        known = {f.name for f in fields(EncoderSpec)}
        spec = EncoderSpec(**{k: v for k, v in meta["spec"].items() if k in known},
                           fusion_weights=fusion_weights or {},
                           extra={"folder": str(model_dir), "provenance": meta.get("provenance", "")})
        self._setup(FastTokenizer(folder / "tokenizer.json", meta["special_ids"], meta["model_input_names"]), spec)
        self._embeddings = arrays.load(folder / "embeddings.npy", mmap_mode="r")
        self._hidden = int(meta["hidden"])
        heads = meta.get("heads", {})
        self._sparse = _head(folder, "sparse", np.float64) if "sparse" in heads else None
        self._colbert = _head(folder, "colbert", np.float32) if "colbert" in heads else None
        self._colbert_dim = int(heads.get("colbert", self._hidden))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3  # its warnings about unused initializers are not the user's business
        graph = folder / GRAPHS[precision] if precision == "fp32" else quantize_int8(folder)
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    @property
    def dim(self) -> int:
        return self._hidden

    @property
    def colbert_dim(self) -> int:
        return self._colbert_dim

    def _heads(self, batch_ids, want_dense, want_sparse, want_colbert, cls_at):
        width = max(len(x) for x in batch_ids)
        ids = np.full((len(batch_ids), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(batch_ids), width), dtype=np.int64)
        for r, x in enumerate(batch_ids):
            ids[r, :len(x)], mask[r, :len(x)] = x, 1
        hidden = self._session.run(None, {"inputs_embeds": np.asarray(self._embeddings[ids], np.float32),
                                          "attention_mask": mask})[0]
        dense = sparse_w = colb = None
        if want_dense:
            if self.spec.pooling == "cls":
                dense = hidden[:, 0].copy()
            else:
                m = mask[:, :, None].astype(np.float32)
                dense = (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)
            if self.spec.normalize:
                dense /= np.maximum(np.linalg.norm(dense, axis=-1, keepdims=True), 1e-12)
        if want_sparse:
            if self._sparse is not None:  # float64, as the torch encoder computes it
                w, b = self._sparse
                sparse_w = np.maximum(hidden.astype(np.float64) @ w.T + b, 0.0)[..., 0].astype(np.float32)
            else:
                sparse_w = np.ones(hidden.shape[:2], dtype=np.float32)
        if want_colbert:
            states = hidden[:, 1:]
            if self._colbert is not None:
                w, b = self._colbert
                states = states @ w.T + b
            colb = states / np.maximum(np.linalg.norm(states, axis=-1, keepdims=True), 1e-12)
        return dense, sparse_w, colb


def load_onnx_encoder(model_dir: Path, fingerprint: str, precision: str = "fp32", threads: int | None = None,
                      fusion_weights: dict | None = None) -> OnnxEncoder:
    """The ONNX encoder of `model_dir`, exporting it first when the cache has no good copy.

    Raises ExportError when the model cannot be exported (the caller keeps torch)."""
    folder = export_dir(model_dir, fingerprint)
    for attempt in (0, 1):
        if not _complete(folder):
            if folder.exists():
                log.warning("the ONNX export in %s is incomplete or damaged; exporting it again", folder)
                shutil.rmtree(folder, ignore_errors=True)
            _export_from(model_dir, folder)
        try:
            return OnnxEncoder(folder, model_dir, precision, threads, fusion_weights)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged graph makes ONNX Runtime raise many kinds
            if attempt:
                raise ExportError(f"the ONNX export of {model_dir} cannot be loaded ({type(e).__name__}: {e})") from e
            log.warning("the ONNX export in %s cannot be loaded (%s); exporting it again", folder, type(e).__name__)
            shutil.rmtree(folder, ignore_errors=True)
    raise AssertionError("unreachable")


def _export_from(model_dir: Path, folder: Path) -> None:
    from .loader import load_encoder

    log.info("exporting %s to ONNX once (%s)", model_dir, folder)
    export(load_encoder(str(model_dir), device="cpu", precision="fp32", runtime="torch"), folder)


def _complete(folder: Path) -> bool:
    """runtime.json present and every file it lists there at its recorded size."""
    try:
        meta = _read_meta(folder)
        return meta.get("format") == EXPORT_FORMAT and all(
            (folder / name).stat().st_size == size for name, size in meta["files"].items())
    except (OSError, ModelError, KeyError, AttributeError, TypeError):
        return False


def _read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{folder / MARKER} is unreadable ({e})") from e


def _head(folder: Path, name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    return arrays.load(folder / f"{name}_w.npy").astype(dtype), arrays.load(folder / f"{name}_b.npy").astype(dtype)
