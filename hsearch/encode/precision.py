"""Which runtime and number format encode a batch of texts: the choice, what the machine can run, and why.

Two settings, each with `auto`:
    runtime    torch (transformers; every model and long-context method) | onnx (ONNX Runtime over a graph
               exported once into the model cache, hsearch/encode/onnx_export.py; no torch, no transformers)
    precision  fp32 (the reference: FlagEmbedding parity) | bf16 (torch, a CPU with AVX512-BF16 or AMX, or
               CUDA) | fp16 (torch, CUDA) | int8 (onnx: for BERT-family models the calibrated int8 graph
               of hsearch/encode/onnx_graph.py, else ONNX Runtime's dynamic quantisation)
`auto` picks by purpose, from the measurements in benchmarks/RESULTS.md ("Encoder speed and precision"): queries
(one short text, latency) and documents (bulk, throughput) want different things. The library's
`load_encoder` defaults to the reference (torch, fp32); the engine, the CLI and the server default to
`auto`. `HSEARCH_RUNTIME` / `HSEARCH_PRECISION` set the default for a process (the tests pin fp32 torch).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache

from hsearch.errors import InputError
from hsearch.hardware import cpu_flags, cpu_has_bf16, cpu_has_vnni  # noqa: F401 - this module's API too

log = logging.getLogger("hsearch")

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
RUNTIMES = ("auto", "torch", "onnx")
PURPOSES = ("queries", "documents")

# What `auto` picks on a CPU, per purpose (see the module docstring for where these were measured):
# queries: ONNX Runtime fp32 (no torch import; int8 is faster still, for queries and documents, but is
# opt-in: its nDCG cost, -0.0055 at worst, is above the 0.002 budget on some sets); documents: torch bf16
# where the CPU has bf16 instructions, else fp32.
AUTO_QUERY_PRECISION = "fp32"
AUTO_DOCUMENT_PRECISION_BF16_CPU = "bf16"


@dataclass(frozen=True)
class Choice:
    runtime: str  # torch | onnx
    precision: str  # fp32 | bf16 | fp16 | int8
    note: str = ""  # why auto chose differently from its first preference, said once

    def __str__(self) -> str:
        return f"{self.runtime}/{self.precision}"


def defaults(precision: str | None, runtime: str | None) -> tuple[str, str]:
    """The arguments with None replaced by $HSEARCH_PRECISION / $HSEARCH_RUNTIME, else auto."""
    precision = precision or os.environ.get("HSEARCH_PRECISION") or "auto"
    runtime = runtime or os.environ.get("HSEARCH_RUNTIME") or "auto"
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    return precision, runtime


def choose(precision: str | None = None, runtime: str | None = None, purpose: str = "documents",
           device: str | None = None, long_context=None) -> Choice:
    """Resolve the settings for `purpose` on this machine, or refuse what it cannot run (with what to use)."""
    precision, runtime = defaults(precision, runtime)
    if purpose not in PURPOSES:
        raise InputError(f"unknown purpose {purpose!r}; choose from {', '.join(PURPOSES)}")
    cuda = _cuda(device, need_torch=runtime != "onnx" and (purpose == "documents" or precision in ("fp16", "bf16")))
    if runtime == "onnx" or (runtime == "auto" and precision == "int8"):
        return _onnx(precision, long_context, device, cuda)
    if runtime == "torch":
        return _torch(precision, purpose, cuda)
    # runtime auto
    if precision in ("bf16", "fp16"):
        return _torch(precision, purpose, cuda)
    if purpose == "queries" and not cuda and long_context is None:
        if onnx_available():
            return Choice("onnx", AUTO_QUERY_PRECISION if precision == "auto" else precision)
        return Choice("torch", "fp32", note="onnxruntime is not installed: queries are encoded by torch "
                                            "(pip install onnxruntime for a faster start)")
    return _torch(precision, purpose, cuda)


def _onnx(precision: str, long_context, device, cuda: bool) -> Choice:
    if precision not in ("auto", "fp32", "int8"):
        raise InputError(f"the onnx runtime runs fp32 or int8, not {precision}; use --runtime torch for {precision}")
    if long_context is not None:
        raise InputError("long-context methods run on torch only; use --runtime torch (or auto)")
    if device is not None and device != "cpu":
        raise InputError(f"the onnx runtime runs on the CPU here, not {device}; use --runtime torch on a GPU")
    if not onnx_available():
        raise InputError("the onnx runtime needs onnxruntime: pip install onnxruntime")
    return Choice("onnx", "fp32" if precision == "auto" else precision)


def _torch(precision: str, purpose: str, cuda: bool) -> Choice:
    if precision == "int8":
        raise InputError("int8 runs on ONNX Runtime; use --runtime onnx (or auto) with --precision int8")
    if precision == "fp16" and not cuda:
        raise InputError("fp16 needs a CUDA GPU; on this CPU use " + ("bf16 or fp32" if cpu_has_bf16() else "fp32")
                         + " (or int8 on the onnx runtime)")
    if precision == "bf16" and not cuda and not cpu_has_bf16():
        raise InputError("this CPU has no bf16 instructions (AVX512-BF16 or AMX); use --precision fp32, or int8 "
                         "on the onnx runtime")
    if precision != "auto":
        return Choice("torch", precision)
    if cuda:
        return Choice("torch", "fp16")
    if purpose == "documents":
        if cpu_has_bf16():
            return Choice("torch", AUTO_DOCUMENT_PRECISION_BF16_CPU)
        return Choice("torch", "fp32", note="this CPU has no bf16 instructions (AVX512-BF16 or AMX): documents are "
                                            "encoded in fp32, about half as fast")
    return Choice("torch", "fp32")


def _cuda(device: str | None, need_torch: bool) -> bool:
    if device is not None:
        return device.startswith("cuda")
    if not need_torch:  # the query path does not import torch just to learn there is no GPU
        return False
    import torch

    return torch.cuda.is_available()


@lru_cache(maxsize=1)
def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None
