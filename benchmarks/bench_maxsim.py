"""Latency of ColBERT MaxSim re-ranking over compressed token vectors (decode + MaxSim).

    python benchmarks/bench_maxsim.py --candidates 200,1000 --tokens 300 --dims 128,1024 --nq 32 \
        --repeats 7 --device auto --codecs int8,float16,pq

For each dim one segment of max(candidates) documents is written per codec (token counts uniform in
[tokens/2, 3*tokens/2], clustered unit vectors); then for each candidate count the median latency of
scoring a random candidate set is reported for:
    torch      MultiVectorReader.score: gather codes from the memory map, move codes to the device,
               decode there, batched MaxSim kernel (hsearch.index.maxsim.maxsim)
    np-f32     vectorised numpy baseline: numpy decode, one float32 matmul, np.maximum.reduceat
    np-ref     the test oracle: numpy decode + maxsim_reference (per-document loop, float64)
plus bytes per token, segment write time (pq: includes codebook training) and the MaxSim error of
the codec against float32 (mean absolute difference of scores).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report import commit_header  # noqa: E402

from hsearch.index.maxsim import maxsim_reference, resolve_device  # noqa: E402
from hsearch.index.multivector import open_multivector, write_multivector  # noqa: E402


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    return a


def make_docs(rng, n_docs, tokens, dim, n_centers=512):
    """Clustered unit vectors, one flat float32 array sliced into per-document views."""
    centers = unit(rng.standard_normal((n_centers, dim), dtype=np.float32))
    lengths = rng.integers(max(1, tokens // 2), max(2, tokens * 3 // 2) + 1, n_docs)
    total = int(lengths.sum())
    x = np.empty((total, dim), np.float32)
    step = 65536
    for s in range(0, total, step):  # chunked to keep the temporaries small
        e = min(total, s + step)
        x[s:e] = centers[rng.integers(0, n_centers, e - s)]
        x[s:e] += rng.standard_normal((e - s, dim), dtype=np.float32) * np.float32(1.5 / np.sqrt(dim))
        unit(x[s:e])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs = [x[offsets[i]:offsets[i + 1]] for i in range(n_docs)]
    return docs, centers


def np_f32(query, reader, ids):
    """Vectorised numpy baseline: decode, one matmul, segment max with reduceat."""
    toks = reader.tokens(ids)
    lengths = np.array([len(t) for t in toks])
    x = np.concatenate(toks)
    sim = x @ query.T
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.maximum.reduceat(sim, starts, axis=0).mean(axis=1)


def timed(fn, repeats):
    fn()  # warm-up (page cache, allocator, CUDA context)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=ints, default=[200, 1000])
    ap.add_argument("--tokens", type=int, default=300, help="mean tokens per document")
    ap.add_argument("--dims", type=ints, default=[128, 1024])
    ap.add_argument("--nq", type=int, default=32, help="query tokens")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--codecs", default="int8,float16,pq")
    ap.add_argument("--pq-iters", type=int, default=20)
    ap.add_argument("--pq-max-train", type=int, default=16384)
    ap.add_argument("--no-ref", action="store_true", help="skip the slow float64 reference loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    n_docs = max(args.candidates)
    print(commit_header() + "\n")
    print(f"device={device} torch_threads={torch.get_num_threads()} tokens~{args.tokens} nq={args.nq} "
          f"repeats={args.repeats} (median ms)")
    print(f"{'dim':>5} {'codec':>8} {'B/tok':>6} {'write_s':>7} {'cands':>6} {'tokens':>8} "
          f"{'torch_ms':>9} {'np-f32_ms':>9} {'np-ref_ms':>9} {'|err|':>8}")
    rng = np.random.default_rng(args.seed)
    for dim in args.dims:
        docs, centers = make_docs(rng, n_docs, args.tokens, dim)
        ids = np.arange(n_docs, dtype=np.int64) * 3 + 1
        query = unit(centers[rng.integers(0, len(centers), args.nq)]
                     + rng.standard_normal((args.nq, dim), dtype=np.float32) * np.float32(1.0 / np.sqrt(dim)))
        cand_sets = {c: rng.permutation(ids)[:c] for c in args.candidates}
        exact = {c: maxsim_reference(query, [docs[(i - 1) // 3] for i in cand_sets[c]]) for c in args.candidates} \
            if not args.no_ref else None
        with tempfile.TemporaryDirectory() as tmp:
            for codec in codecs:
                opts = {"pq_iters": args.pq_iters, "pq_max_train": args.pq_max_train} if codec == "pq" else {}
                t = time.perf_counter()
                meta = write_multivector(Path(tmp) / codec, ids, docs, codec, **opts)
                write_s = time.perf_counter() - t
                reader = open_multivector(Path(tmp) / codec, device=device)
                name = meta["codec"] if meta["codec"] == codec else f"{codec}->{meta['codec']}"
                for c in args.candidates:
                    cand = cand_sets[c]
                    n_tok = int(sum(len(docs[(i - 1) // 3]) for i in cand))
                    t_torch = timed(lambda: reader.score(query, cand), args.repeats)
                    t_np = timed(lambda: np_f32(query, reader, cand), args.repeats)
                    if args.no_ref:
                        t_ref, err = float("nan"), float("nan")
                    else:
                        t_ref = timed(lambda: maxsim_reference(query, reader.tokens(cand)), max(1, args.repeats // 3))
                        err = float(np.abs(reader.score(query, cand) - exact[c]).mean())
                    print(f"{dim:>5} {name:>8} {reader.bytes_per_token:>6.0f} {write_s:>7.2f} {c:>6} {n_tok:>8} "
                          f"{t_torch:>9.1f} {t_np:>9.1f} {t_ref:>9.1f} {err:>8.1e}", flush=True)
                del reader
        del docs


if __name__ == "__main__":
    main()
