"""ColBERT late-interaction scoring: MaxSim(q, p) = mean over query tokens of max_j <q_i, p_j>.

`maxsim` is the batched torch kernel (CUDA when available, else CPU, same code); `maxsim_numpy` the
same computation in numpy, which a CPU-only query process uses so that it never imports torch (about a
second of a cold query; `use_torch` decides); `maxsim_int8` scores int8 codes without converting them
to floats (below); `maxsim_reference` is a deliberately plain numpy loop used as the test oracle.

`maxsim_int8` (the CPU path of the int8 codec): the query's token vectors are quantised too, per row,
symmetric, and the products are exact integer dot products (ONNX Runtime's MatMulInteger, whose u8 x s8
kernels use VNNI where the CPU has it); the per-token scales of both sides multiply afterwards:
<q, p> ~= sq * sp * <cq, cp>. Integer sums are exact, so a document's score does not depend on the
documents scored beside it. The query's rounding is the one new error (the documents' codes are
already int8); its nDCG cost is measured in benchmarks/RESULTS.md.

Kernel layout: the candidate documents' token vectors are one flat (T, d) tensor with per-document
`offsets` (n+1,), like a CSR matrix. One matmul gives the (T, nq) similarity matrix; a segment-max
(`scatter_reduce_(..., "amax")`, measured faster on CPU than padding, `segment_reduce` or
`np.maximum.reduceat`) reduces it to (n, nq); the mean over query tokens gives (n,). Int8 codes can
be passed with their per-token `scales`: the codes travel to the device as int8 and the scale is
applied to the similarity rows (exact: <q, s*c> = s*<q, c>), so no float copy of the documents is
made on the host; other codes (PQ) pass a `decode` callable that runs on the device per chunk.
Work is cut into document chunks of at most `max_elements` decoded floats, so memory stays bounded
whatever the candidate count (and, on CPU, the chunk stays in cache).

No device probing happens at import time, and torch is imported by the functions that use it (so
opening a collection for a dense-only query never loads it); `device=None` resolves on each call.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from hsearch.index.compiled import loops
from hsearch.index.kernels import ranges, symmetric_int8

if TYPE_CHECKING:
    import torch

__all__ = ["maxsim", "maxsim_int8", "maxsim_numpy", "maxsim_reference", "resolve_device", "use_torch"]

# Decoded floats per chunk (T_chunk * d). On CPU small chunks that stay in cache are ~2.5x faster
# than one big pass (measured 1000 docs x 300 tokens x 128 dims: 2**21 -> 24 ms, 2**25 -> 63 ms);
# on CUDA one large pass is best.
_CPU_MAX_ELEMENTS = 1 << 21
_CUDA_MAX_ELEMENTS = 1 << 28


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None or "auto" -> cuda when available, else cpu; anything else is passed to torch.device."""
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_torch(device) -> bool:
    """Whether MaxSim runs on torch: a device named explicitly, or "auto"/None where a GPU may be there
    (torch already loaded and seeing CUDA, or NVIDIA device nodes present). A plain CPU machine scores in
    numpy and never pays torch's import."""
    import sys

    if device is not None and not (isinstance(device, str) and device == "auto"):
        return True
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.is_available()
    return _nvidia_nodes()


@functools.cache
def _nvidia_nodes() -> bool:
    """Whether the machine has NVIDIA device nodes: looked up once a process, not on every query."""
    import os

    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def maxsim_numpy(query: np.ndarray, doc_tokens: np.ndarray, offsets: np.ndarray,
                 max_elements: int = _CPU_MAX_ELEMENTS, scales: np.ndarray | None = None) -> np.ndarray:
    """`maxsim` on the CPU in numpy: float32 (n,) for token rows `doc_tokens` (T, d) split by `offsets`
    (n+1,); a document with no tokens scores 0. Rows may be stored codes: float16, or int8 with
    per-row `scales` (T,), which are converted a cache-sized chunk (~max_elements) at a time, never
    decoded whole; an int8 row's scale multiplies its nq similarities, not its d values."""
    q = np.asarray(query, np.float32)
    if q.ndim == 1:
        q = q[None, :]
    off = np.asarray(offsets, np.int64)
    n = len(off) - 1
    out = np.zeros(max(n, 0), np.float32)
    if n <= 0 or off[-1] == 0:
        return out
    qT = np.ascontiguousarray(q.T)
    budget = max(1, int(max_elements) // max(q.shape[1], 1))
    for d0, d1 in _chunks(off, budget):
        t0, t1 = int(off[d0]), int(off[d1])
        if t1 == t0:
            continue
        sim = np.asarray(doc_tokens[t0:t1], np.float32) @ qT  # (t, nq)
        if scales is not None:
            sim *= np.asarray(scales[t0:t1], np.float32)[:, None]
        lengths = np.diff(off[d0:d1 + 1])
        full = np.flatnonzero(lengths > 0)
        best = np.maximum.reduceat(sim, (off[d0:d1][full] - t0), axis=0)  # one row per non-empty document
        out[d0 + full] = best.mean(axis=1)
    return out


# Rows of codes per MatMulInteger call: ~1.5 MiB of 384-dim codes, converted in cache and multiplied
# there (a longer document gets a call of its own).
_INT8_CHUNK_ROWS = 4096
_INT8_SESSIONS: dict = {}
# int8_graph(), saved: a query process reads it instead of importing onnx, which cost a cold default-mode
# query about half a second (benchmarks/RESULTS.md, "Cold CLI query in the default mode"); a test in
# tests/test_multivector.py holds the two equal.
INT8_GRAPH = Path(__file__).resolve().parents[1] / "data" / "maxsim_int8.onnx"


def int8_graph():
    """The ONNX model computing float32 (t, nq) = MatMulInteger(A - 128, B) * S: A the documents' codes as
    uint8 (int8 + 128: ORT's fast kernels take unsigned activations), B the quantised query (d, nq), S the
    documents' per-row scales (t, 1)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["Y"]),
             helper.make_node("Cast", ["Y"], ["Yf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["Yf", "S"], ["out"])]
    graph = helper.make_graph(
        nodes, "maxsim_int8",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["t", "d"]),
         helper.make_tensor_value_info("B", TensorProto.INT8, ["d", "nq"]),
         helper.make_tensor_value_info("S", TensorProto.FLOAT, ["t", 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["t", "nq"])],
        initializer=[helper.make_tensor("a_zero", TensorProto.UINT8, [], [128])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _int8_session():
    """The ONNX Runtime session of INT8_GRAPH, made once per process (per thread count). Threads:
    OMP_NUM_THREADS when set (as faiss and BLAS read it), else ONNX Runtime's default."""
    import os

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    sess = _INT8_SESSIONS.get(threads)
    if sess is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sess = ort.InferenceSession(INT8_GRAPH.read_bytes(), options, providers=["CPUExecutionProvider"])
        _INT8_SESSIONS[threads] = sess
    return sess


def quantize_query(query: np.ndarray, bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes (nq, d), float32 scales (nq,)): per-row symmetric, |code| <= 2**(bits-1) - 1. bits
    defaults to 8 where int8 products add in 32 bits (VNNI), else 7: without VNNI ORT's u8 x s8 kernel
    adds pairs of products in 16 bits, and 255 * 127 * 2 would saturate them (255 * 63 * 2 does not)."""
    if bits is None:
        from hsearch.hardware import cpu_has_vnni

        bits = 8 if cpu_has_vnni() else 7
    return symmetric_int8(np.asarray(query, np.float32), bits)


def maxsim_int8(query: np.ndarray, codes: np.ndarray, scales: np.ndarray, starts: np.ndarray,
                ends: np.ndarray, chunk_rows: int = _INT8_CHUNK_ROWS, bits: int | None = None) -> np.ndarray:
    """MaxSim of `query` (nq, d) float32 against documents stored as int8 `codes` (T, d) with per-row
    `scales` (T,): document i is rows starts[i]:ends[i] (they may be anywhere: the rows are gathered a
    chunk at a time, so a memory map is read once and no copy of all candidates is made). float32 (n,);
    a document with no rows scores 0. See the module docstring for the arithmetic."""
    q = np.asarray(query, np.float32)
    if q.ndim == 1:
        q = q[None, :]
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    n = len(starts)
    out = np.zeros(n, np.float32)
    full = np.flatnonzero(ends > starts)
    if not len(full):
        return out
    qc, qs = quantize_query(q, bits)
    qT = np.ascontiguousarray(qc.T)
    session = _int8_session()
    u8 = np.asarray(codes).view(np.uint8)
    sc = np.asarray(scales)
    lengths = ends[full] - starts[full]
    cum = np.concatenate([[0], np.cumsum(lengths)])
    best = np.zeros((len(full), q.shape[0]), np.float32)
    for i0, i1 in _chunks(cum, chunk_rows):
        docs = full[i0:i1]
        a, s = _gather_int8(u8, sc, starts[docs], ends[docs], int(cum[i1] - cum[i0]))
        sim = session.run(None, {"A": a, "B": qT, "S": s[:, None]})[0]
        best[i0:i1] = np.maximum.reduceat(sim, cum[i0:i1] - cum[i0], axis=0)
    out[full] = (best * qs).mean(axis=1)
    return out


def _gather_int8(u8: np.ndarray, scales: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int):
    """The `n` rows starts[i]:ends[i] of int8 codes (viewed as uint8) as uint8 + 128, the zero point the graph
    removes, and their scales as float32: through maxsim_kernel.py's one pass where compiled loops are on."""
    kernel = loops("maxsim_kernel")
    if kernel is None:
        rows = ranges(starts, ends)
        a = np.take(u8, rows, axis=0)
        np.bitwise_xor(a, np.uint8(0x80), out=a)
        return a, np.asarray(scales[rows], np.float32)
    if len(starts) and (starts.min() < 0 or ends.max() > len(u8) or (ends < starts).any()):
        raise IndexError(f"token rows outside the {len(u8)} stored (damaged offsets); rewrite the segment")
    bits = scales.view(f"u{scales.dtype.itemsize}")  # numba has no float16: the scales travel as their bits
    a, s = np.empty((n, u8.shape[1]), np.uint8), np.empty(n, bits.dtype)
    kernel.gather_int8(u8, bits, starts, ends, a, s)
    return a, s.view(scales.dtype).astype(np.float32, copy=False)


def _as_tensor(x) -> torch.Tensor:
    import torch

    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if not arr.flags.writeable:  # torch warns on read-only buffers (e.g. memory maps): copy once
        arr = arr.copy()
    return torch.from_numpy(arr)


def _chunks(offsets: np.ndarray, budget_tokens: int):
    """Yield (d0, d1) document ranges whose token count is <= budget_tokens (one big doc alone)."""
    n = len(offsets) - 1
    d0 = 0
    while d0 < n:
        d1 = int(np.searchsorted(offsets, offsets[d0] + budget_tokens, side="right")) - 1
        d1 = min(max(d1, d0 + 1), n)
        yield d0, d1
        d0 = d1


def maxsim(
    query,
    doc_tokens,
    offsets,
    device: str | torch.device | None = None,
    *,
    scales=None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    max_elements: int | None = None,
) -> torch.Tensor:
    """MaxSim of one query against n documents in one batched pass (per memory-bounded chunk).

    query:      (nq, d) float tensor/array (nq >= 1); a (d,) vector is taken as nq = 1.
    doc_tokens: (T, d) tensor/array: float32/float16/bfloat16 vectors, or int8 codes with `scales`.
    offsets:    (n+1,) int, offsets[0] == 0, non-decreasing, offsets[-1] == T; document i owns rows
                offsets[i]:offsets[i+1]. A document with no tokens scores 0.
    scales:     optional (T,) per-token scale; the token vector is doc_tokens[t] * scales[t].
    decode:     optional callable mapping a (t, ...) slice of doc_tokens (already on the device) to
                (t, d) float vectors, e.g. a PQ codebook lookup; applied chunk by chunk so the
                decoded floats never exist for all T tokens at once.
    device:     None/"auto" -> cuda if available else cpu. Inputs are moved chunk by chunk.
    dtype:      matmul dtype; default float32 on CPU, float16 on CUDA. Max and mean are float32.
    Returns a float32 tensor (n,) on `device`.
    """
    import torch

    dev = resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    q = _as_tensor(query)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"query must be (nq >= 1, d), got shape {tuple(q.shape)}")
    x = _as_tensor(doc_tokens)
    if x.ndim != 2 or (decode is None and x.shape[1] != q.shape[1]):
        raise ValueError(f"doc_tokens must be (T, {q.shape[1]}), got shape {tuple(x.shape)}")
    off = np.asarray(offsets.cpu() if isinstance(offsets, torch.Tensor) else offsets, dtype=np.int64)
    n = len(off) - 1
    if n < 0 or off[0] != 0 or off[-1] != x.shape[0] or (n > 0 and np.any(np.diff(off) < 0)):
        raise ValueError("offsets must be (n+1,), start at 0, be non-decreasing and end at len(doc_tokens)")
    s = None
    if scales is not None:
        s = _as_tensor(scales).reshape(-1)
        if s.shape[0] != x.shape[0]:
            raise ValueError("scales must have one entry per token row")
    elif decode is None and not x.is_floating_point():
        raise ValueError("integer doc_tokens need their per-token `scales` or a `decode`")

    out = torch.zeros(n, dtype=torch.float32, device=dev)
    if n == 0 or x.shape[0] == 0:
        return out
    d = q.shape[1]
    if max_elements is None:
        max_elements = _CUDA_MAX_ELEMENTS if dev.type == "cuda" else _CPU_MAX_ELEMENTS
    budget = max(1, int(max_elements) // max(d, 1))
    nonblocking = dev.type == "cuda"
    qT = q.to(device=dev, dtype=dtype).T.contiguous()
    nq = qT.shape[1]
    lengths_all = torch.from_numpy(np.diff(off))
    for d0, d1 in _chunks(off, budget):
        t0, t1 = int(off[d0]), int(off[d1])
        if t1 == t0:
            continue  # only empty documents: they keep 0
        xc = x[t0:t1].to(device=dev, non_blocking=nonblocking)
        if decode is not None:
            xc = decode(xc)
        xc = xc.to(dtype)
        sim = (xc @ qT).float()  # (t, nq)
        if s is not None:
            sim = sim * s[t0:t1].to(device=dev, non_blocking=nonblocking).float()[:, None]
        lengths = lengths_all[d0:d1].to(dev)
        doc = torch.repeat_interleave(torch.arange(d1 - d0, device=dev), lengths, output_size=t1 - t0)
        best = torch.zeros((d1 - d0, nq), dtype=torch.float32, device=dev)
        best.scatter_reduce_(0, doc[:, None].expand(-1, nq), sim, reduce="amax", include_self=False)
        scores = best.mean(dim=1)
        out[d0:d1] = torch.where(lengths > 0, scores, torch.zeros_like(scores))
    return out


def maxsim_reference(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """Plain numpy MaxSim, one document at a time, in float64; returns float32 (n,)."""
    q = np.asarray(query, dtype=np.float64)
    if q.ndim == 1:
        q = q[None, :]
    out = np.zeros(len(docs), dtype=np.float32)
    for i, doc in enumerate(docs):
        p = np.asarray(doc, dtype=np.float64)
        if p.shape[0] == 0:
            continue
        out[i] = (q @ p.T).max(axis=1).mean()
    return out
