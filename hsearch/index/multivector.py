"""Compressed token-vector (multi-vector) store for ColBERT MaxSim re-ranking: writer -> files -> reader.

Each document (chunk id, int64) owns a (n_tokens >= 1, dim) float32 matrix of L2-normalised token
vectors. `write_multivector` concatenates all documents once (sorted by id), encodes them once with
a codec (`hsearch/index/mv_codecs.py`) and writes memory-mappable `.npy` files plus a JSON meta into
one immutable segment folder; `open_multivector` memory-maps them and returns a `MultiVectorReader`
whose `score` runs the MaxSim kernels of `hsearch.index.maxsim`: on a CPU, int8 codes are multiplied as
integers (`maxsim_int8`); on a GPU, codes travel to the device and are decoded there.

Files (all prefixed `mv_` so the store can share a segment folder with other stores):
    mv_meta.json      format, version, codec, dim, n_docs, n_tokens, bytes_per_token, codec params
    mv_ids.npy        (n_docs,) int64, strictly increasing (documents are stored sorted by id)
    mv_offsets.npy    (n_docs+1,) int64 token offsets; doc i owns token rows offsets[i]:offsets[i+1]
    mv_codes.npy      per-token codes: int8 (N, dim) | float16 (N, dim) | uint8 (N, M) for pq
    mv_scales.npy     int8 codec only: (N,) float16 (or float32) per-token scale
    mv_centroids.npy  pq codec only: (M, 256, dim/M) float32 codebook (no pickle, no faiss needed to read)
`mv_meta.json` is written last, so a folder without it is an unfinished write. A pq segment with
fewer token vectors than its codec needs to train is stored with int8 instead (codec "int8",
requested_codec "pq", note "...").
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.index.base import Positions
from hsearch.index.kernels import ranges
from hsearch.index.maxsim import maxsim, maxsim_int8, maxsim_numpy, resolve_device, use_torch
from hsearch.index.mv_codecs import codec_files, get_codec
from hsearch.storage import arrays

if TYPE_CHECKING:  # torch is imported where MaxSim runs: opening a collection must not pay for it
    import torch

__all__ = ["write_multivector", "merge_multivector", "open_multivector", "MultiVectorReader"]

# On a CPU, int8 codes are scored by integer products (maxsim_int8, the query rounded to int8 as well);
# False scores them in float32 as before, which benchmarks/quality.py --maxsim float compares against.
INT8_PRODUCTS = True

FORMAT = "hsearch.multivector"
VERSION = 1
META = "mv_meta.json"


def write_multivector(folder: Path, ids: np.ndarray, docs: Sequence[np.ndarray], codec: str = "int8",
                      *, dim: int | None = None, **codec_opts) -> dict:
    """Write one segment of token vectors into `folder`; returns the meta dict (also in mv_meta.json).

    ids: (n,) int64, unique. docs: n float32 (n_tokens >= 1, dim) matrices (rows L2-normalised for
    ColBERT; not enforced). Documents are stored sorted by id. `dim` is needed only for an empty
    segment (default 0 there). codec_opts go to the codec (int8: scale_dtype; pq: M, pq_min_train,
    pq_max_train, pq_iters, seed).
    """
    folder = Path(folder)
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) != len(docs):
        raise InputError(f"ids must be 1-D with one entry per doc; got shape {ids.shape} for {len(docs)} docs")
    if len(ids) and not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    if len(sids) > 1 and np.any(sids[1:] == sids[:-1]):
        dup = sids[1:][sids[1:] == sids[:-1]][:5].tolist()
        raise InputError(f"duplicate ids in multivector segment: {dup}")

    if len(docs):
        dims = {np.shape(d)[-1] if np.ndim(d) == 2 else -1 for d in docs}
        if len(dims) != 1 or -1 in dims:
            raise InputError("every doc must be a 2-D (n_tokens, dim) array with the same dim")
        d_found = dims.pop()
        if dim is not None and dim != d_found:
            raise InputError(f"docs have dim {d_found}, dim={dim} was given")
        dim = int(d_found)
        lengths = np.fromiter((np.shape(docs[i])[0] for i in order), np.int64, len(docs))
        if np.any(lengths < 1):
            bad = sids[lengths < 1][:5].tolist()
            raise InputError(f"every doc needs at least one token vector; empty docs for ids {bad}")
        flat = np.concatenate([np.asarray(docs[i], dtype=np.float32) for i in order], axis=0)
    else:
        dim = int(dim or 0)
        lengths = np.zeros(0, np.int64)
        flat = np.zeros((0, dim), np.float32)
    offsets = np.zeros(len(sids) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])

    requested = codec
    cod = get_codec(codec, dim, **codec_opts)
    note = None
    if cod.trained:
        if cod.can_train(flat.shape[0]):
            cod.train(flat)
        else:
            note = (f"pq needs >= {cod.min_train} token vectors to train, segment has {flat.shape[0]}; "
                    "stored with int8 instead")
            int8_opts = {k: v for k, v in codec_opts.items() if k == "scale_dtype"}
            cod = get_codec("int8", dim, **int8_opts)
    codes = cod.encode(flat)
    return _write_files(folder, sids, offsets, codes, cod, requested, note)


def merge_multivector(folder: Path, readers: list, keeps: list[np.ndarray], codec: str = "int8") -> dict:
    """Write one segment holding the documents of `readers` where `keeps[i]` (a bool mask over reader
    i's documents) is set. Codes of an untrained codec (int8, float16, float32) with the same settings
    everywhere are copied as they are, so scores stay bitwise equal; otherwise (pq: a codebook per
    segment) the vectors are decoded and encoded again with `codec`, trained on the merged set."""
    cods = {(r.codec_name, json.dumps(r.meta.get("params", {}), sort_keys=True)) for r in readers}
    dim = max((r.dim for r in readers), default=0)
    if len(cods) == 1 and not readers[0].codec.trained:
        parts = []
        for r, keep in zip(readers, keeps):
            rows = np.flatnonzero(keep)
            codes, off = r._gather(rows) if len(rows) else ({k: np.asarray(v[:0]) for k, v in r.codes.items()},
                                                            np.zeros(1, np.int64))
            parts.append((np.asarray(r.ids)[rows], codes, off))
        ids = np.concatenate([p[0] for p in parts])
        codes = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(np.concatenate([np.diff(p[2]) for p in parts]), out=offsets[1:])
        r0 = readers[0]
        return _write_files(folder, ids, offsets, codes, r0.codec, r0.meta.get("requested_codec", r0.codec_name),
                            r0.meta.get("note"))
    ids, docs = [], []
    for r, keep in zip(readers, keeps):
        sel = np.asarray(r.ids)[np.flatnonzero(keep)]
        ids.append(sel)
        docs += r.tokens(sel)
    return write_multivector(folder, np.concatenate(ids) if ids else np.empty(0, np.int64), docs, codec, dim=dim)


def _write_files(folder: Path, ids: np.ndarray, offsets: np.ndarray, codes: dict[str, np.ndarray],
                 cod, requested: str, note: str | None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / META
    if meta_path.exists():
        meta_path.unlink()  # segments are immutable; rewriting one in place starts over
    np.save(folder / "mv_ids.npy", np.ascontiguousarray(ids, np.int64))
    np.save(folder / "mv_offsets.npy", np.ascontiguousarray(offsets, np.int64))
    for key in codec_files(cod.name):
        np.save(folder / f"mv_{key}.npy", np.ascontiguousarray(codes[key]))
    cod.save(folder)
    n_tokens = int(offsets[-1])
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "codec": cod.name,
        "requested_codec": requested,
        "dim": cod.dim,
        "n_docs": int(len(ids)),
        "n_tokens": n_tokens,
        "bytes_per_token": cod.bytes_per_token(),
        "codes_bytes": int(sum(np.asarray(codes[k]).nbytes for k in codec_files(cod.name))),
        "params": cod.params(),
    }
    if note:
        meta["note"] = note
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, meta_path)
    return meta



def _load(path: Path) -> np.ndarray:
    arr = arrays.load(path, mmap_mode="r")
    return arr


def open_multivector(folder: Path, device: str | torch.device | None = None) -> "MultiVectorReader":
    """Memory-map a segment written by `write_multivector`. device: None/"auto" -> cuda if available."""
    return MultiVectorReader(Path(folder), device=device)


class MultiVectorReader:
    """Read-only view of one multivector segment (see module docstring for the files). It scores given
    ids and has no `search`: ColBERT only re-ranks candidates that other signals retrieved."""

    def __init__(self, folder: Path, device: str | torch.device | None = None):
        self.folder = Path(folder)
        meta_path = self.folder / META
        if not meta_path.exists():
            raise CollectionError(f"{self.folder}: no {META}; the multivector segment is missing or unfinished "
                                  "(write it again)")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise CollectionError(f"{meta_path}: unreadable meta ({e}); rewrite the segment") from None
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise CollectionError(f"{self.folder}: not a {FORMAT} v{VERSION} segment; rewrite it")
        self.dim = int(self.meta["dim"])
        self.codec_name = self.meta["codec"]
        opts = {k: v for k, v in self.meta.get("params", {}).items() if k in ("scale_dtype", "M")}
        self.codec = get_codec(self.codec_name, self.dim, **opts)
        self.codec.load(self.folder)
        self.device = device
        try:
            self.ids = _load(self.folder / "mv_ids.npy")
            self.offsets = _load(self.folder / "mv_offsets.npy")
            self.codes = {k: _load(self.folder / f"mv_{k}.npy") for k in codec_files(self.codec_name)}
        except (OSError, ValueError) as e:
            raise CollectionError(f"{self.folder}: cannot read multivector files ({e}); "
                                  "rewrite the segment") from None
        n, t = int(self.meta["n_docs"]), int(self.meta["n_tokens"])
        if self.ids.shape != (n,) or self.offsets.shape != (n + 1,) or any(
            c.shape[0] != t for c in self.codes.values()
        ):
            raise CollectionError(f"{self.folder}: file shapes disagree with {META}; rewrite the segment")
        self._positions = Positions(np.asarray(self.ids))  # (row per id, found mask)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def bytes_per_token(self) -> float:
        return float(self.meta["bytes_per_token"])

    # -- lookups

    def _gather(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Codes of the given document rows, concatenated, and their new (len(rows)+1,) offsets."""
        off = np.asarray(self.offsets)
        starts, ends = off[rows], off[rows + 1]
        lengths = ends - starts
        new_off = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=new_off[1:])
        if len(rows) and np.all(rows[1:] == rows[:-1] + 1):  # contiguous run: plain slice
            sl = slice(int(starts[0]), int(ends[-1]))
            return {k: np.array(v[sl]) for k, v in self.codes.items()}, new_off
        tok = ranges(starts, ends)
        return {k: v[tok] for k, v in self.codes.items()}, new_off

    def tokens(self, ids: np.ndarray) -> list[np.ndarray]:
        """Decoded float32 (n_tokens, dim) matrices, one per id; an id not in the segment gives (0, dim)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows, found = self._positions(ids)
        out = [np.zeros((0, self.dim), np.float32) for _ in range(len(ids))]
        sel = np.flatnonzero(found)
        if sel.size:
            codes, off = self._gather(rows[sel])
            flat = self.codec.decode(codes)
            for j, i in enumerate(sel):
                out[i] = flat[off[j]:off[j + 1]]
        return out

    # -- scoring

    def _query(self, query) -> np.ndarray:
        if type(query).__module__.startswith("torch"):
            query = query.detach().float().cpu().numpy()
        q = np.array(query, np.float32, ndmin=2)
        if q.ndim != 2 or q.shape[0] == 0 or (q.shape[1] != self.dim and len(self) > 0):
            raise InputError(f"query must be (nq >= 1, {self.dim}) token vectors, got shape {tuple(q.shape)}")
        if not np.isfinite(q).all():
            raise InputError("query contains NaN or inf")
        return q

    def _score_rows(self, q: np.ndarray, rows: np.ndarray, max_tokens: int) -> np.ndarray:
        """MaxSim of the documents at `rows`, decoded on the device in chunks of ~max_tokens tokens."""
        out = np.zeros(len(rows), np.float32)
        if len(rows) == 0:
            return out
        if not use_torch(self.device):  # a CPU-only process: numpy, no torch import
            return self._score_rows_numpy(q, rows, max_tokens)
        import torch

        dev = resolve_device(self.device)
        q = torch.from_numpy(q)
        off = np.asarray(self.offsets)
        lengths = off[rows + 1] - off[rows]
        cum = np.concatenate([[0], np.cumsum(lengths)])
        r0 = 0
        while r0 < len(rows):
            r1 = int(np.searchsorted(cum, cum[r0] + max_tokens, side="right")) - 1
            r1 = min(max(r1, r0 + 1), len(rows))
            codes, sub_off = self._gather(rows[r0:r1])
            tcodes = {k: torch.from_numpy(v).to(dev) for k, v in codes.items()}  # only codes travel
            x, extra = self.codec.kernel_inputs(tcodes)
            out[r0:r1] = maxsim(q, x, sub_off, device=dev, **extra).cpu().numpy()
            r0 = r1
        return out

    def _score_rows_numpy(self, q: np.ndarray, rows: np.ndarray, max_tokens: int) -> np.ndarray:
        off = np.asarray(self.offsets)
        if self.codec_name == "int8" and INT8_PRODUCTS:  # integer products on the codes, gathered in chunks
            return maxsim_int8(q, self.codes["codes"], self.codes["scales"], off[rows], off[rows + 1])
        out = np.zeros(len(rows), np.float32)
        cum = np.concatenate([[0], np.cumsum(off[rows + 1] - off[rows])])
        r0 = 0
        while r0 < len(rows):
            r1 = min(max(int(np.searchsorted(cum, cum[r0] + max_tokens, side="right")) - 1, r0 + 1), len(rows))
            codes, sub_off = self._gather(rows[r0:r1])
            if self.codec.trained:  # pq: codes index a codebook; decoded here
                out[r0:r1] = maxsim_numpy(q, self.codec.decode(codes), sub_off)
            else:  # the same inputs as the torch kernel's: raw codes, and int8's scales
                x, extra = self.codec.kernel_inputs(codes)
                out[r0:r1] = maxsim_numpy(q, x, sub_off, **extra)
            r0 = r1
        return out

    def _max_tokens(self) -> int:
        # tokens gathered from the memory map per kernel call: 2**25 elements (32 MiB of int8 codes,
        # 128 MiB once decoded) on CPU, where the kernel then works in cache-sized pieces; 8x more
        # on CUDA so a typical re-ranking (1000 x 300 tokens) is one or two passes.
        cuda = use_torch(self.device) and resolve_device(self.device).type == "cuda"
        elements = (1 << 28) if cuda else (1 << 25)
        return max(1, elements // max(self.dim, 1))

    def score(self, query, ids: np.ndarray) -> np.ndarray:
        """MaxSim of `query` (nq, dim) against each id; float32 (len(ids),), 0 for ids not in the segment."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        q = self._query(query)
        out = np.zeros(len(ids), np.float32)
        rows, found = self._positions(ids)
        sel = np.flatnonzero(found)
        if sel.size:
            # score each distinct row once, in storage order (contiguous reads from the memory map)
            urows, inv = np.unique(rows[sel], return_inverse=True)
            out[sel] = self._score_rows(q, urows, self._max_tokens())[inv]
        return out
