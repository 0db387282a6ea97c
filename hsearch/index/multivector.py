"""Compressed token-vector (multi-vector) store for ColBERT MaxSim re-ranking.

Each document (chunk id, int64) owns a (n_tokens >= 1, dim) float32 matrix of L2-normalised token
vectors. `write_multivector` concatenates all documents once (sorted by id), encodes them once with
a codec and writes memory-mappable `.npy` files plus a JSON meta into one immutable segment folder;
`open_multivector` memory-maps them and returns a `MultiVectorReader` whose `score` runs the MaxSim
kernel of `hsearch.index.maxsim` (codes travel to the device; decoding happens there).

Files (all prefixed `mv_` so the store can share a segment folder with other stores):
    mv_meta.json      format, version, codec, dim, n_docs, n_tokens, bytes_per_token, codec params
    mv_ids.npy        (n_docs,) int64, strictly increasing (documents are stored sorted by id)
    mv_offsets.npy    (n_docs+1,) int64 token offsets; doc i owns token rows offsets[i]:offsets[i+1]
    mv_codes.npy      per-token codes: int8 (N, dim) | float16 (N, dim) | uint8 (N, M) for pq
    mv_scales.npy     int8 codec only: (N,) float16 (or float32) per-token scale
    mv_centroids.npy  pq codec only: (M, 256, dim/M) float32 codebook (no pickle, no faiss needed to read)
`mv_meta.json` is written last, so a folder without it is an unfinished write.

Codecs (`get_codec(name, dim, **opts)`):
    int8    (default) per-token symmetric: scale = max|x|/127 rounded *up* to the scale dtype,
            codes = round(x/scale). |x - decode| <= scale/2 per element. No training: segments
            merge by concatenating codes (`merge_multivector`). dim + 2 bytes/token (dim + 4 with
            scale_dtype="float32"; float16 scales need max|x| <= ~8.3e6, fine for unit vectors).
    float16 plain half precision, reference quality. 2*dim bytes/token.
    float32 no compression (4*dim bytes/token): the baseline that compression is measured against.
    pq      faiss.ProductQuantizer(dim, M, 8), trained on the segment's own vectors. M defaults to
            the largest divisor of dim that is <= dim/4 (dim=128 -> 32, 384 -> 96, 1024 -> 256);
            M bytes/token. Training needs at least `pq_min_train` token vectors (default 4096 =
            16 per centroid); with fewer the segment falls back to int8 and the meta says so
            (codec "int8", requested_codec "pq", note "..."). Training uses at most
            `pq_max_train` (default 16384 = 64 per centroid, above faiss' 39) vectors, sampled
            with a fixed seed, `pq_iters` (default 20) k-means iterations; its cost grows as
            n_train * dim * iters (seconds for dim 128, tens of seconds for dim 1024 on 2 cores).
            PQ segments cannot merge by concatenation (each has its own codebook): merge decodes
            and re-encodes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hsearch.errors import CollectionError, InputError
from hsearch.index.maxsim import maxsim, resolve_device

__all__ = [
    "Int8Codec",
    "Float16Codec",
    "PQCodec",
    "CODECS",
    "get_codec",
    "write_multivector",
    "open_multivector",
    "merge_multivector",
    "MultiVectorReader",
]

Allow = Callable[[np.ndarray], np.ndarray]

FORMAT = "hsearch.multivector"
VERSION = 1
META = "mv_meta.json"
_F16_MAX = float(np.finfo(np.float16).max)


# ----------------------------------------------------------------------------------------- codecs
#
# A codec turns an (N, d) float32 matrix into a dict of per-token arrays (all with first axis N, so
# slicing and gathering rows works the same for every codec) and back. Codec-level state (the PQ
# codebook) is saved/loaded separately. `kernel_inputs` converts torch views of the codes (already
# on the device) into what `maxsim` takes: (doc_tokens, extra keyword arguments: scales / decode).


class Int8Codec:
    name = "int8"
    trained = False

    def __init__(self, dim: int, scale_dtype: str = "float16"):
        if scale_dtype not in ("float16", "float32"):
            raise InputError(f"int8 scale_dtype must be 'float16' or 'float32', got {scale_dtype!r}")
        self.dim = int(dim)
        self.scale_dtype = np.dtype(scale_dtype)

    def bytes_per_token(self, dim: int | None = None) -> float:
        return float((self.dim if dim is None else dim) + self.scale_dtype.itemsize)

    def params(self) -> dict:
        return {"scale_dtype": self.scale_dtype.name}

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = _check_vectors(x, self.dim)
        n = x.shape[0]
        codes = np.empty(x.shape, np.int8)
        scales = np.empty(n, self.scale_dtype)
        step = _block_rows(self.dim)  # row blocks: temporaries stay cache-sized
        buf = np.empty((min(step, n), self.dim), np.float32)
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            b = buf[: r1 - r0]
            np.abs(x[r0:r1], out=b)
            scale32 = b.max(axis=1) / np.float32(127.0)
            if self.scale_dtype == np.float16 and np.any(scale32 > _F16_MAX):
                raise InputError("int8 codec with float16 scales needs max|x| <= 8.3e6 per token; "
                                 "pass scale_dtype='float32' for such vectors")
            scale = scale32.astype(self.scale_dtype)
            low = scale.astype(np.float32) < scale32  # rounded down: bump one ulp so |x/scale| <= 127
            scale[low] = np.nextafter(scale[low], self.scale_dtype.type(np.inf))
            div = np.where(scale > 0, scale.astype(np.float32), np.float32(1.0))  # scale 0 <=> row ~ 0
            np.divide(x[r0:r1], div[:, None], out=b)
            np.rint(b, out=b)
            np.clip(b, -127, 127, out=b)
            codes[r0:r1] = b
            scales[r0:r1] = scale
        return {"codes": codes, "scales": scales}

    def decode(self, codes: dict[str, np.ndarray]) -> np.ndarray:
        return codes["codes"].astype(np.float32) * np.asarray(codes["scales"], np.float32)[:, None]

    def kernel_inputs(self, codes: dict[str, torch.Tensor]):
        return codes["codes"], {"scales": codes["scales"]}

    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass


class Float16Codec:
    name = "float16"
    trained = False
    dtype = np.float16

    def __init__(self, dim: int):
        self.dim = int(dim)

    def bytes_per_token(self, dim: int | None = None) -> float:
        return float(np.dtype(self.dtype).itemsize * (self.dim if dim is None else dim))

    def params(self) -> dict:
        return {}

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = _check_vectors(x, self.dim)
        if self.dtype == np.float16 and x.size and float(np.abs(x).max()) > _F16_MAX:
            raise InputError("float16 codec: a value exceeds the float16 range (65504); use int8 or pq")
        return {"codes": x.astype(self.dtype)}

    def decode(self, codes: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(codes["codes"]).astype(np.float32)

    def kernel_inputs(self, codes: dict[str, torch.Tensor]):
        return codes["codes"], {}

    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass


class Float32Codec(Float16Codec):
    """No compression: the reference that the other codecs' nDCG cost is measured against."""

    name = "float32"
    dtype = np.float32


def _default_pq_m(dim: int) -> int:
    best = 1
    for m in range(1, dim // 4 + 1):
        if dim % m == 0:
            best = m
    return best


class PQCodec:
    """faiss product quantiser, M sub-quantisers of 8 bits; codebook kept as a numpy array."""

    name = "pq"
    trained = True
    nbits = 8
    ksub = 256

    def __init__(self, dim: int, M: int | None = None, pq_min_train: int = 4096,
                 pq_max_train: int = 16384, pq_iters: int = 20, seed: int = 1234):
        self.dim = int(dim)
        self.M = int(M) if M is not None else _default_pq_m(self.dim)
        if self.M < 1 or self.dim % self.M:
            raise InputError(f"pq codec: M={self.M} must divide dim={self.dim}")
        self.dsub = self.dim // self.M
        self.min_train = max(int(pq_min_train), self.ksub)
        self.max_train = max(int(pq_max_train), self.min_train)
        self.iters = int(pq_iters)
        self.seed = int(seed)
        self.centroids: np.ndarray | None = None  # (M, 256, dsub) float32
        self._dev_cache: dict[str, torch.Tensor] = {}

    def bytes_per_token(self, dim: int | None = None) -> float:
        return float(self.M)

    def params(self) -> dict:
        return {"M": self.M, "nbits": self.nbits, "dsub": self.dsub,
                "codebook_bytes": self.M * self.ksub * self.dsub * 4}

    def can_train(self, n_vectors: int) -> bool:
        return n_vectors >= self.min_train

    def train(self, x: np.ndarray) -> None:
        import faiss  # imported lazily: only writers of pq segments need it

        x = _check_vectors(x, self.dim)
        if not self.can_train(x.shape[0]):
            raise InputError(f"pq codec needs >= {self.min_train} training vectors, got {x.shape[0]}")
        if x.shape[0] > self.max_train:
            rng = np.random.default_rng(self.seed)
            x = x[np.sort(rng.choice(x.shape[0], self.max_train, replace=False))]
        pq = faiss.ProductQuantizer(self.dim, self.M, self.nbits)
        pq.cp.niter = self.iters
        pq.cp.seed = self.seed
        pq.cp.min_points_per_centroid = 1  # we enforce our own minimum; silences faiss' warning
        pq.cp.max_points_per_centroid = max(256, -(-x.shape[0] // self.ksub))
        pq.train(np.ascontiguousarray(x))
        self._pq = pq
        cent = faiss.vector_to_array(pq.centroids).reshape(self.M, self.ksub, self.dsub)
        self.centroids = cent.astype(np.float32)
        self._dev_cache.clear()

    def _faiss_pq(self):
        pq = getattr(self, "_pq", None)
        if pq is None:
            import faiss

            pq = faiss.ProductQuantizer(self.dim, self.M, self.nbits)
            faiss.copy_array_to_vector(np.ascontiguousarray(self.centroids).ravel(), pq.centroids)
            self._pq = pq
        return pq

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = _check_vectors(x, self.dim)
        if self.centroids is None:
            raise InputError("pq codec is not trained")
        if x.shape[0] == 0:
            return {"codes": np.zeros((0, self.M), np.uint8)}
        codes = self._faiss_pq().compute_codes(np.ascontiguousarray(x))
        return {"codes": np.asarray(codes, np.uint8).reshape(x.shape[0], self.M)}

    def decode(self, codes: dict[str, np.ndarray]) -> np.ndarray:
        c = np.asarray(codes["codes"]).astype(np.intp)
        out = self.centroids[np.arange(self.M)[None, :], c]  # (N, M, dsub)
        return out.reshape(c.shape[0], self.dim).astype(np.float32, copy=False)

    def kernel_inputs(self, codes: dict[str, torch.Tensor]):
        return codes["codes"], {"decode": self.decode_torch}

    def decode_torch(self, codes: torch.Tensor) -> torch.Tensor:
        """(t, M) uint8 codes -> (t, dim) float32 on the codes' device (one index_select)."""
        key = str(codes.device)
        cached = self._dev_cache.get(key)
        if cached is None:
            flat = torch.from_numpy(np.array(self.centroids, np.float32).reshape(self.M * self.ksub, self.dsub))
            base = torch.arange(self.M, dtype=torch.long) * self.ksub
            cached = self._dev_cache[key] = (flat.to(codes.device), base.to(codes.device))
        flat, base = cached
        idx = (codes.long() + base).reshape(-1)
        return torch.index_select(flat, 0, idx).reshape(codes.shape[0], self.dim)

    def save(self, folder: Path) -> None:
        np.save(folder / "mv_centroids.npy", self.centroids)

    def load(self, folder: Path) -> None:
        self.centroids = np.load(folder / "mv_centroids.npy")
        if self.centroids.shape != (self.M, self.ksub, self.dsub):
            raise CollectionError(f"{folder}: pq codebook has shape {self.centroids.shape}, meta says "
                                  f"{(self.M, self.ksub, self.dsub)}; rewrite the segment")


CODECS = {"int8": Int8Codec, "float16": Float16Codec, "float32": Float32Codec, "pq": PQCodec}


def get_codec(name: str, dim: int, **opts):
    """A codec object by name ("int8", "float16", "float32", "pq") with its options."""
    if name not in CODECS:
        raise InputError(f"unknown multivector codec {name!r}; choose one of {sorted(CODECS)}")
    try:
        return CODECS[name](dim, **opts)
    except TypeError as e:
        raise InputError(f"bad options for codec {name!r}: {e}") from None


def _check_vectors(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"token vectors must be (N, {dim}), got shape {x.shape}")
    step = _block_rows(dim)
    for r0 in range(0, x.shape[0], step):  # blockwise: no full-size boolean temporary
        if not np.isfinite(x[r0:r0 + step]).all():
            raise InputError("token vectors contain NaN or inf")
    return x


def _block_rows(dim: int) -> int:
    return max(1, (1 << 20) // max(dim, 1))


# ------------------------------------------------------------------------------------------ write


def _codec_files(codec_name: str) -> tuple[str, ...]:
    return ("codes", "scales") if codec_name == "int8" else ("codes",)


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


def _write_files(folder: Path, ids: np.ndarray, offsets: np.ndarray, codes: dict[str, np.ndarray],
                 cod, requested: str, note: str | None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / META
    if meta_path.exists():
        meta_path.unlink()  # segments are immutable; rewriting one in place starts over
    np.save(folder / "mv_ids.npy", np.ascontiguousarray(ids, np.int64))
    np.save(folder / "mv_offsets.npy", np.ascontiguousarray(offsets, np.int64))
    for key in _codec_files(cod.name):
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
        "codes_bytes": int(sum(np.asarray(codes[k]).nbytes for k in _codec_files(cod.name))),
        "params": cod.params(),
    }
    if note:
        meta["note"] = note
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, meta_path)
    return meta


# ------------------------------------------------------------------------------------------- read


def _load(path: Path) -> np.ndarray:
    arr = np.load(path, mmap_mode="r")
    return arr


def open_multivector(folder: Path, device: str | torch.device | None = None) -> "MultiVectorReader":
    """Memory-map a segment written by `write_multivector`. device: None/"auto" -> cuda if available."""
    return MultiVectorReader(Path(folder), device=device)


class MultiVectorReader:
    """Read-only view of one multivector segment (see module docstring for the files)."""

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
            self.codes = {k: _load(self.folder / f"mv_{k}.npy") for k in _codec_files(self.codec_name)}
        except (OSError, ValueError) as e:
            raise CollectionError(f"{self.folder}: cannot read multivector files ({e}); "
                                  "rewrite the segment") from None
        n, t = int(self.meta["n_docs"]), int(self.meta["n_tokens"])
        if self.ids.shape != (n,) or self.offsets.shape != (n + 1,) or any(
            c.shape[0] != t for c in self.codes.values()
        ):
            raise CollectionError(f"{self.folder}: file shapes disagree with {META}; rewrite the segment")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def bytes_per_token(self) -> float:
        return float(self.meta["bytes_per_token"])

    # -- lookups

    def _rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row per id, found mask); rows of missing ids are 0 (mask them)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(self) == 0 or ids.size == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, len(self) - 1)
        found = np.asarray(self.ids[rows]) == ids
        return rows.astype(np.int64), found

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
        tok = np.repeat(starts - new_off[:-1], lengths) + np.arange(new_off[-1], dtype=np.int64)
        return {k: v[tok] for k, v in self.codes.items()}, new_off

    def tokens(self, ids: np.ndarray) -> list[np.ndarray]:
        """Decoded float32 (n_tokens, dim) matrices, one per id; an id not in the segment gives (0, dim)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows, found = self._rows(ids)
        out = [np.zeros((0, self.dim), np.float32) for _ in range(len(ids))]
        sel = np.flatnonzero(found)
        if sel.size:
            codes, off = self._gather(rows[sel])
            flat = self.codec.decode(codes)
            for j, i in enumerate(sel):
                out[i] = flat[off[j]:off[j + 1]]
        return out

    # -- scoring

    def _query(self, query) -> torch.Tensor:
        if isinstance(query, torch.Tensor):
            q = query.float()
        else:
            q = torch.from_numpy(np.array(query, np.float32, ndmin=2))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[0] == 0 or (q.shape[1] != self.dim and len(self) > 0):
            raise InputError(f"query must be (nq >= 1, {self.dim}) token vectors, got shape {tuple(q.shape)}")
        if not torch.isfinite(q).all():
            raise InputError("query contains NaN or inf")
        return q

    def _score_rows(self, q: torch.Tensor, rows: np.ndarray, max_tokens: int) -> np.ndarray:
        """MaxSim of the documents at `rows`, decoded on the device in chunks of ~max_tokens tokens."""
        out = np.zeros(len(rows), np.float32)
        if len(rows) == 0:
            return out
        dev = resolve_device(self.device)
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

    def _max_tokens(self) -> int:
        # tokens gathered from the memory map per kernel call: 2**25 elements (32 MiB of int8 codes,
        # 128 MiB once decoded) on CPU, where the kernel then works in cache-sized pieces; 8x more
        # on CUDA so a typical re-ranking (1000 x 300 tokens) is one or two passes.
        elements = (1 << 28) if resolve_device(self.device).type == "cuda" else (1 << 25)
        return max(1, elements // max(self.dim, 1))

    def score(self, query, ids: np.ndarray) -> np.ndarray:
        """MaxSim of `query` (nq, dim) against each id; float32 (len(ids),), 0 for ids not in the segment."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        q = self._query(query)
        out = np.zeros(len(ids), np.float32)
        rows, found = self._rows(ids)
        sel = np.flatnonzero(found)
        if sel.size:
            # score each distinct row once, in storage order (contiguous reads from the memory map)
            urows, inv = np.unique(rows[sel], return_inverse=True)
            out[sel] = self._score_rows(q, urows, self._max_tokens())[inv]
        return out

    def search(self, query, k: int, allow: Allow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force MaxSim over every (allowed) document; best k as (ids int64, scores float32),
        best first, ties broken by smaller id. An oracle for re-ranking and fine for small segments."""
        q = self._query(query)
        k = int(k)
        if k < 0:
            raise InputError(f"k must be >= 0, got {k}")
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if k == 0 or len(self) == 0:
            return empty
        ids = np.asarray(self.ids)
        rows = np.arange(len(self), dtype=np.int64)
        if allow is not None:
            mask = np.asarray(allow(ids), dtype=bool)
            if mask.shape != ids.shape:
                raise InputError(f"allow must return one bool per id, got shape {mask.shape}")
            rows = rows[mask]
        if rows.size == 0:
            return empty
        scores = self._score_rows(q, rows, self._max_tokens())
        cand = ids[rows]
        if k < len(rows):
            part = np.argpartition(-scores, k - 1)[:k]
            kth = scores[part].min()
            # include every tie at the cut so the id tie-break below is exact
            part = np.flatnonzero(scores >= kth)
        else:
            part = np.arange(len(rows))
        order = np.lexsort((cand[part], -scores[part]))[:k]
        sel = part[order]
        return cand[sel].astype(np.int64), scores[sel].astype(np.float32)


# ------------------------------------------------------------------------------------------ merge


def merge_multivector(folder: Path, readers: Sequence[MultiVectorReader], keep: Allow | None = None,
                      codec: str | None = None, **codec_opts) -> dict:
    """Write the union of `readers` (ids must not repeat across them) into a new segment `folder`.

    keep: optional callable ids -> bool mask of documents to carry over (e.g. not deleted).
    When every reader uses the same untrained codec (int8 with one scale dtype, or float16) and
    `codec` is None or that codec, codes are concatenated as they are (no re-quantisation, exact).
    Otherwise documents are decoded and re-encoded with `codec` (default: the first reader's
    requested codec), which for pq trains a fresh codebook on the merged vectors.
    """
    readers = list(readers)
    dims = {r.dim for r in readers if len(r)}
    if len(dims) > 1:
        raise InputError(f"cannot merge multivector segments of different dims {sorted(dims)}")
    dim = dims.pop() if dims else (readers[0].dim if readers else 0)
    parts = []
    for r in readers:
        ids = np.asarray(r.ids)
        rows = np.arange(len(r), dtype=np.int64)
        if keep is not None and len(r):
            rows = rows[np.asarray(keep(ids), dtype=bool)]
        parts.append((r, rows))
    all_ids = np.concatenate([np.asarray(r.ids)[rows] for r, rows in parts] or [np.zeros(0, np.int64)])

    names = {(r.codec_name, json.dumps(r.codec.params(), sort_keys=True)) for r in readers}
    same = len(names) == 1 and next(iter(names))[0] in ("int8", "float16")
    target = codec or (readers[0].meta.get("requested_codec", readers[0].codec_name) if readers else "int8")
    if same and target == readers[0].codec_name and not codec_opts:
        cod = readers[0].codec
        gathered = [r._gather(rows) for r, rows in parts]
        codes = {k: np.concatenate([g[0][k] for g in gathered]) for k in _codec_files(cod.name)}
        lengths = np.concatenate([np.diff(g[1]) for g in gathered])
        order = np.argsort(all_ids, kind="stable")
        sids = all_ids[order]
        if len(sids) > 1 and np.any(sids[1:] == sids[:-1]):
            raise InputError("duplicate ids across merged multivector segments")
        off_in = np.concatenate([[0], np.cumsum(lengths)])
        new_off = np.concatenate([[0], np.cumsum(lengths[order])]).astype(np.int64)
        tok = np.repeat(off_in[:-1][order] - new_off[:-1], lengths[order])
        tok += np.arange(new_off[-1], dtype=np.int64)
        codes = {k: v[tok] for k, v in codes.items()}
        return _write_files(Path(folder), sids, new_off, codes, cod, cod.name, None)
    docs: list[np.ndarray] = []
    for r, rows in parts:
        docs.extend(r.tokens(np.asarray(r.ids)[rows]))
    return write_multivector(Path(folder), all_ids, docs, target, dim=dim, **codec_opts)
