"""Bulk encoding on Ray: the encoder's own batches, run by model replicas in a Ray Data actor pool.

`hsearch index PATH --ray [ADDRESS]` attaches a `RayBatches` to the collection's encoder. The driver
still reads the corpus, chunks it and plans the batches (`Encoder.encode`: tokenisation, length-grouped
token-budget batches, long-context windows); for each commit, Ray Data hands every planned batch to an
actor holding a replica of the same model (one per GPU on GPU nodes, a fraction of a CPU otherwise),
writes the three representations as Parquet shards, and the writer loads them into the collection's
stores (segment files or a Qdrant upsert) as if encoded in-process.

Bit for bit: a text's floats depend on the batch it is padded with (measured: 15% of texts differ
in the last bits when the same texts are batched differently), so the actors get exactly the batches
the single-process run forms and run them with the same code (`Encoder._encode_batch`); the result is
the single-process output, as long as driver and actors run the same kind of device (float32 on
CPU, float16 on GPU). Across processes and torch thread counts, CPU results were identical.

Pitfalls (issue 7, measured on a 2-CPU node): an actor asking for a whole CPU starves Ray Data's own
tasks and the job hangs, so CPU actors ask for `cpus_per_actor` (0.5); every Ray Data job adds a few
seconds, paid once per commit (`commit_every` chunks): 200 scifact documents, one commit, took 97 s
on Ray against 91 s in-process.
"""
from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hsearch.errors import ClusterError, HsearchError, InputError
from hsearch.types import Encoded

log = logging.getLogger("hsearch")


class _Replica:
    """A Ray actor's model replica: encodes one planned batch per call, returns one row per text."""

    def __init__(self, model: str, fingerprint: str, long_context, long_context_length, want: tuple, threads: int,
                 precision: str = "fp32"):
        from hsearch.encode import load_encoder

        # the driver's thread count and precision: BLAS kernels may split (and so round) work by the first
        self.encoder = load_encoder(model, long_context=long_context, long_context_length=long_context_length,
                                    threads=threads, precision=precision, runtime="torch")
        if self.encoder.spec.fingerprint != fingerprint:
            raise ClusterError(f"the Ray workers' model {model!r} has other files than this machine's "
                               f"(fingerprint {self.encoder.spec.fingerprint} != {fingerprint}), so their vectors "
                               f"would differ; give every Ray node the same files for {model} and the same hsearch "
                               "version, or index without --ray")
        self.want = want

    def __call__(self, rows):
        import pyarrow as pa

        out = {"b": [], "r": [], "dense": [], "sparse_t": [], "sparse_w": [], "colbert": [], "n": [], "d": []}
        for b, ids in zip(rows["b"].to_pylist(), rows["ids"].to_pylist()):
            for r, enc in enumerate(self.encoder._encode_batch(ids, *self.want)):
                out["b"].append(b)
                out["r"].append(r)
                out["dense"].append(None if enc.dense is None else np.asarray(enc.dense, np.float32).tobytes())
                sp = enc.sparse
                out["sparse_t"].append(None if sp is None else [int(t) for t in sp])
                out["sparse_w"].append(None if sp is None else [float(w) for w in sp.values()])
                out["colbert"].append(None if enc.colbert is None else np.asarray(enc.colbert, np.float32).tobytes())
                out["n"].append(0 if enc.colbert is None else int(enc.colbert.shape[0]))
                out["d"].append(0 if enc.colbert is None else int(enc.colbert.shape[1]))
        return pa.table({"b": pa.array(out["b"], pa.int64()), "r": pa.array(out["r"], pa.int64()),
                         "dense": pa.array(out["dense"], pa.binary()),
                         "sparse_t": pa.array(out["sparse_t"], pa.list_(pa.int64())),
                         "sparse_w": pa.array(out["sparse_w"], pa.list_(pa.float64())),  # exact Python floats
                         "colbert": pa.array(out["colbert"], pa.binary()), "n": pa.array(out["n"], pa.int64()),
                         "d": pa.array(out["d"], pa.int64())})


class RayBatches:
    """`Encoder.batch_runner` that runs the planned batches on Ray (see the module docstring)."""

    def __init__(self, encoder, model: str, address: str | None = None, long_context=None,
                 long_context_length=None, workdir: str | Path | None = None, actors: int | None = None,
                 cpus_per_actor: float = 0.5):
        try:
            import ray
        except ImportError:
            raise InputError('--ray needs Ray: pip install "hsearch[ray]"') from None
        if not ray.is_initialized():
            ray.init(address=None if address in (None, "", "local") else address, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.gpu = gpus > 0
        self.actors = actors or (gpus if self.gpu else max(1, int(resources.get("CPU", 1) // 2)))
        self.cpus_per_actor = cpus_per_actor
        import torch

        self.args = dict(model=model, fingerprint=encoder.spec.fingerprint, long_context=long_context,
                         long_context_length=long_context_length, threads=torch.get_num_threads(),
                         precision=getattr(encoder, "precision", "fp32"))
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="hsearch-ray-"))
        self.calls = 0

    def without_long_context(self) -> "RayBatches":
        """The same pool settings for the plain model (a long-context collection's passages)."""
        plain = copy.copy(self)
        plain.args = {**self.args, "long_context": None, "long_context_length": None}
        plain.workdir, plain.calls = self.workdir / "plain", 0
        return plain

    def __call__(self, batches: list[list[list[int]]], dense: bool, sparse: bool, colbert: bool):
        import pyarrow.parquet as pq
        import ray

        if not batches:
            return []
        self.calls += 1
        shards = self.workdir / f"encoded-{self.calls:06d}"
        shutil.rmtree(shards, ignore_errors=True)
        items = [{"b": k, "ids": [list(map(int, x)) for x in batch]} for k, batch in enumerate(batches)]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * self.actors))
        resources = {"num_gpus": 1} if self.gpu else {"num_cpus": self.cpus_per_actor}
        ds = ds.map_batches(_Replica, fn_constructor_kwargs={**self.args, "want": (dense, sparse, colbert)},
                            batch_size=1, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=self.actors), **resources)
        try:
            ds.write_parquet(str(shards))
        except Exception as e:
            raise _worker_error(e) or e
        table = pq.read_table(shards)  # every shard of this commit
        out = [[None] * len(batch) for batch in batches]
        cols = {c: table.column(c).to_pylist() for c in table.column_names}
        for j, (b, r) in enumerate(zip(cols["b"], cols["r"])):
            out[b][r] = _encoded(cols, j)
        shutil.rmtree(shards, ignore_errors=True)  # loaded into the collection's stores by the writer
        missing = sum(x is None for batch in out for x in batch)
        if missing:
            raise ClusterError(f"Ray returned no encoding for {missing} texts; see the Ray logs for the failed "
                               "workers, then run the same index command again (committed documents are not "
                               "encoded again)")
        return out


def _worker_error(e: BaseException) -> HsearchError | None:
    """The hsearch error a Ray worker raised, out of the exceptions Ray wraps it in (its `cause`, or the
    Python chain), so the CLI prints its message instead of a remote traceback."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__ == HsearchError.__module__:  # ours, not a Ray class deriving from it
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def _encoded(cols: dict, j: int) -> Encoded:
    enc = Encoded()
    if cols["dense"][j] is not None:
        enc.dense = np.frombuffer(cols["dense"][j], np.float32).copy()
    if cols["sparse_t"][j] is not None:
        enc.sparse = dict(zip(cols["sparse_t"][j], cols["sparse_w"][j]))
    if cols["colbert"][j] is not None:
        enc.colbert = np.frombuffer(cols["colbert"][j], np.float32).reshape(cols["n"][j], cols["d"][j]).copy()
    return enc


def attach_ray(encoder, model: str, address: str | None = None, **options) -> "RayBatches":
    """Make `encoder` run its batches on Ray (an `hsearch.encode.Encoder`, loaded by name or folder)."""
    if getattr(encoder, "runtime", "torch") != "torch":
        raise InputError("--ray runs the torch encoder on its workers; index with --runtime torch (or auto) and "
                         "--precision fp32/bf16/fp16")
    if not hasattr(encoder, "_encode_batch"):
        raise InputError("--ray needs a model hsearch loads by name or folder (the workers load it again)")
    if Path(model).expanduser().exists():  # workers need not share the driver's working directory
        model = str(Path(model).expanduser().resolve())
    encoder.batch_runner = RayBatches(encoder, model, address, **options)
    return encoder.batch_runner
