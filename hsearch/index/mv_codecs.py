"""Codecs of the multi-vector store: how (N, dim) float32 token vectors become compact per-token codes.

`get_codec(name, dim, **opts)`:
    int8    (default) per-token symmetric: scale = max|x|/127 rounded *up* to the scale dtype,
            codes = round(x/scale). |x - decode| <= scale/2 per element. No training. dim + 2
            bytes/token (dim + 4 with scale_dtype="float32"; float16 scales need max|x| <= ~8.3e6,
            fine for unit vectors).
    float16 plain half precision, reference quality. 2*dim bytes/token.
    float32 no compression (4*dim bytes/token): the baseline that compression is measured against.
    pq      faiss.ProductQuantizer(dim, M, 8), trained on the segment's own vectors. M defaults to
            the largest divisor of dim that is <= dim/4 (dim=128 -> 32, 384 -> 96, 1024 -> 256);
            M bytes/token. Training needs at least `pq_min_train` token vectors (default 4096 =
            16 per centroid); with fewer the writer falls back to int8 and the meta says so.
            Training uses at most `pq_max_train` (default 16384 = 64 per centroid, above faiss'
            39) vectors, sampled with a fixed seed, `pq_iters` (default 20) k-means iterations; its
            cost grows as n_train * dim * iters (seconds for dim 128, tens of seconds for dim 1024
            on 2 cores). Each pq segment has its own codebook.

A codec turns an (N, d) float32 matrix into a dict of per-token arrays (all with first axis N, so
slicing and gathering rows works the same for every codec) and back. Codec-level state (the PQ
codebook) is saved/loaded separately. `kernel_inputs` converts torch views of the codes (already
on the device) into what `maxsim` takes: (doc_tokens, extra keyword arguments: scales / decode).
Nothing here imports torch at module level: only the MaxSim path needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hsearch.errors import CollectionError, InputError
from hsearch.storage import arrays

if TYPE_CHECKING:
    import torch

_F16_MAX = float(np.finfo(np.float16).max)

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
        import torch

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
        self.centroids = arrays.load(folder / "mv_centroids.npy")
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


def codec_files(codec_name: str) -> tuple[str, ...]:
    """The per-token arrays a codec writes (each saved as mv_<name>.npy)."""
    return ("codes", "scales") if codec_name == "int8" else ("codes",)
