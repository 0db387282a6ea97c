"""The facade: open or create a collection, index, add, delete, plan, search, explain.

    from hsearch import open_collection
    col = open_collection("./my-collection", create=True)    # bundled default model
    col.index("./corpus")
    for hit in col.search("how do dogs play?", k=5):  # every signal; or mode="dense+sparse", "bm25", ...
        print(hit.score, hit.id, hit.snippet)
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hsearch.backends import settle_config
from hsearch.config import CollectionConfig
from hsearch.errors import CollectionError, InputError, StaleSnapshot
from hsearch.index.analyzers import check_name
from hsearch.ingest.loaders import Document, LoadStats, load_path
from hsearch.query.execute import execute
from hsearch.query.plan import (
    DEFAULT_WEIGHTS,
    LONG_DOCUMENTS,
    Plan,
    default_mode,
    make_plan,
    model_weights,
    parse_where,
)
from hsearch.snapshot import Snapshot
from hsearch.storage.manifest import MANIFEST, CommitCount, Manifest
from hsearch.types import VIEWS, Hit
from hsearch.writer import IndexReport, Writer

DEFAULT_COLLECTION = ".hsearch"
LOCK_WAIT_S = 60.0
# A reader checks the manifest at least this often even when the commit count (manifest.py, COMMITS) did not move:
# what a writer killed between its commit and the count's update, or a collection without a count, may wait.
REFRESH_S = 1.0
log = logging.getLogger("hsearch")
_OWN = object()  # Collection._write: the collection's own encoder (loaded on first use)


def open_collection(path: str | Path = DEFAULT_COLLECTION, *, create: bool = False, model: str | None = None,
                    config: CollectionConfig | None = None, device: str | None = None,
                    threads: int | None = None, encoder=None, precision: str | None = None,
                    runtime: str | None = None) -> "Collection":
    """Open the collection at `path`; with create=True, make it if it does not exist yet.

    `model` defaults to the model that built the collection (or the bundled default for a new one);
    naming a different model for an existing collection is an error.

    `encoder` plugs in an encoder object instead of loading a model by name, so an application can
    bring its own (an API-served model, a cached or synthetic one; `hsearch.testing.FakeEncoder`, which
    the tests and benchmarks use, is one). It needs what `hsearch.encode.Encoder` offers to the writer and the planner:
        spec          an `EncoderSpec`: its `name` becomes the collection's model, its `fingerprint`
                      identifies it (a collection refuses an encoder with another fingerprint)
        dim, colbert_dim
        tokenizer     called as tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                      truncation=False, verbose=False) -> {"input_ids", "offset_mapping"} (chunking),
                      plus tokenizer.num_special_tokens_to_add() when config.chunk_tokens is None
        encode_documents(texts, colbert=bool, progress=bool) -> list[Encoded]
        encode_queries(texts, dense=bool, sparse=bool, colbert=bool) -> list[Encoded]
    A collection built with an encoder object must be opened with the same object (or one with the
    same fingerprint) to write or to search by text; `run(plan, encoded=...)` needs none.

    `precision` / `runtime` (hsearch/encode/precision.py; None: $HSEARCH_PRECISION / $HSEARCH_RUNTIME,
    else "auto"): how documents and queries are encoded. `auto` encodes documents with torch in bf16
    where the CPU has it (fp32 elsewhere, fp16 on CUDA) and queries with ONNX Runtime in fp32 (no torch
    import); the manifest records each write's choice (`hsearch info`).
    """
    folder = Path(path).expanduser()
    if encoder is not None and model is not None:
        raise InputError("pass either model= or encoder=, not both")
    if config is not None and config.bm25_analyzer is not None:
        check_name(config.bm25_analyzer)
    if (folder / MANIFEST).exists():
        manifest = Manifest.load(folder)
        # A setting the manifest lacks was added to hsearch after the collection was built: its default holds.
        built = CollectionConfig.from_dict(manifest.config).to_dict()
        if config is not None:  # backend names and paths given as at creation compare equal
            config = settle_config(config, folder, built=CollectionConfig.from_dict(manifest.config))
            if config.bm25_analyzer is None:  # left unset: the collection's own
                config = replace(config, bm25_analyzer=built["bm25_analyzer"])
            elif config.bm25 and built["bm25"] and config.bm25_analyzer != built["bm25_analyzer"]:
                raise CollectionError(f"{folder} was built with BM25 analyzer {built['bm25_analyzer']!r}, not "
                                      f"{config.bm25_analyzer!r}; leave --bm25-analyzer out to use its own, or index "
                                      "into a new --collection")
        if config is not None and config.to_dict() != built:
            changed = {k for k, v in config.to_dict().items() if built.get(k) != v and k != "model"}
            if changed - {"commit_every"}:
                raise CollectionError(f"{folder} was built with other settings ({', '.join(sorted(changed))}); "
                                      "use a new --collection folder, or rebuild this one after deleting it")
        col = Collection(folder, manifest, device=device, threads=threads, precision=precision, runtime=runtime)
        if model is not None:
            col._check_model(model)
            col._model = model  # another name for the same files (e5-small-base for an old e5-small collection)
        if encoder is not None:
            col._check_fingerprint(encoder.spec.fingerprint, encoder.spec.name, by_name=False)
            col._encoder = col._query_encoder = encoder  # an application's encoder serves both
        return col
    if not create:
        raise CollectionError(f"no collection at {folder}; create one with `hsearch index PATH --collection {folder}`")
    config = config or CollectionConfig()
    if config.bm25_analyzer is None:
        config = replace(config, bm25_analyzer="auto")
    if encoder is not None:
        config = replace(config, model=encoder.spec.name)
    elif model is not None:
        config = replace(config, model=model)
    config = settle_config(config, folder)
    given = encoder is not None
    if encoder is None:
        from hsearch.encode import load_encoder

        encoder = load_encoder(config.model, device=device, threads=threads, long_context=config.long_context,
                               long_context_length=config.long_context_length, precision=precision,
                               runtime=runtime, purpose="documents")
    folder.mkdir(parents=True, exist_ok=True)
    spec = asdict(encoder.spec)
    manifest = Manifest(config=config.to_dict(), encoder={**spec, "dim": encoder.dim,
                                                          "colbert_dim": encoder.colbert_dim})
    manifest.save(folder)
    col = Collection(folder, manifest, device=device, threads=threads, precision=precision, runtime=runtime)
    col._encoder = encoder
    if given:
        col._query_encoder = encoder
    return col


class Collection:
    def __init__(self, folder: Path, manifest: Manifest, device=None, threads=None, precision=None, runtime=None):
        from hsearch.encode.precision import defaults

        self.folder, self._manifest = folder, manifest
        self.config = CollectionConfig.from_dict(manifest.config)
        self._device, self._threads = device, threads
        self._precision, self._runtime = defaults(precision, runtime)  # a bad name fails here, not at first use
        self._model = self.config.model
        self._encoder = None
        self._query_encoder = None
        self._snapshot: Snapshot | None = None
        self._snapshot_key = None
        self._commits: CommitCount | None = None  # see snapshot()
        self._commits_seen, self._checked = None, 0.0
        self._manifest_path = str(self.folder / MANIFEST)
        self._snapshot_lock = threading.Lock()  # queries from several threads (hsearch serve) share one snapshot
        # seconds a write waits for another process's write (an index run, a server's writer) before it is refused
        self.lock_wait = LOCK_WAIT_S

    # ---- model ------------------------------------------------------------------------------
    @property
    def encoder(self):
        """The document encoder (bulk; with the collection's long-context method, if any)."""
        if self._encoder is None:
            self._encoder = self._load("documents")
        return self._encoder

    @property
    def query_encoder(self):
        """The encoder for queries: ONNX Runtime under `auto` (no torch import), else the document encoder.
        A long-context collection's queries meet its own encoders (`query_encoders`)."""
        if self._query_encoder is None:
            if self.config.long_context:
                self._query_encoder = self.encoder
            else:
                from hsearch.encode.precision import choose

                want = choose(self._precision, self._runtime, "queries", self._device)
                loaded = self._encoder
                # an encoder without runtime/precision (an application's own object) serves queries too
                same = loaded is not None and (want.runtime, want.precision) == (
                    getattr(loaded, "runtime", want.runtime), getattr(loaded, "precision", want.precision))
                self._query_encoder = loaded if same else self._load("queries")
        return self._query_encoder

    def _prepare_queries(self) -> None:
        """After a write: export the ONNX query graph now, while torch is loaded anyway, so that the first
        query process starts fast (nothing to do when queries run on torch)."""
        from hsearch.encode.precision import choose

        if self._query_encoder is None and not self.config.long_context and \
                choose(self._precision, self._runtime, "queries", self._device).runtime == "onnx":
            self.query_encoder  # noqa: B018 - the property loads (and if needed exports) it

    def _load(self, purpose: str):
        from hsearch.encode import load_encoder

        long_context = self.config.long_context if purpose == "documents" else None
        enc = load_encoder(self._model, device=self._device, threads=self._threads, long_context=long_context,
                           long_context_length=self.config.long_context_length if long_context else None,
                           precision=self._precision, runtime=self._runtime, purpose=purpose)
        self._check_fingerprint(enc.spec.fingerprint, self._model)
        return enc

    def _check_model(self, model: str):
        from hsearch.encode.loader import _fingerprint, resolve_model_dir

        self._check_fingerprint(_fingerprint(resolve_model_dir(model)), model)

    def _check_fingerprint(self, fingerprint: str, model: str, by_name: bool = True):
        """`by_name`: `model` is a name resolved to files (not an encoder object), so the same name with
        other files means those files changed since the collection was built."""
        built = self._manifest.encoder.get("fingerprint")
        if built and fingerprint != built and by_name and model == self.config.model:
            from hsearch.encode.loader import FORMER_FILES

            former = FORMER_FILES.get(built)
            hint = f" (its files, from an earlier version of hsearch: --model {former})" if former else ""
            raise CollectionError(f"{self.folder} was built with another version of model {model!r} (its files have "
                                  f"changed since); rebuild it into a new --collection, or pass the model it was built "
                                  f"with as --model{hint}")
        if built and fingerprint != built:
            raise CollectionError(f"{self.folder} was built with model {self._manifest.encoder.get('name')!r}, "
                                  f"not {model!r}; query it with that model, or index into a new --collection")

    # ---- writing ----------------------------------------------------------------------------
    def index(self, path: str | Path, progress: bool = False, stats: LoadStats | None = None) -> IndexReport:
        """Index a folder or corpus.jsonl: encode new and changed documents, drop deleted ones."""
        stats = stats if stats is not None else LoadStats()
        src = Path(path).expanduser().resolve()
        docs = load_path(src, stats)
        report = self._write(lambda w: w.sync(docs, str(src), delete_missing=True, progress=progress))
        self._prepare_queries()
        if stats.documents == 0 and report.unchanged == 0:
            raise InputError(f"no documents found in {path} ({stats.files} files, {stats.skipped_binary} binary, "
                             f"{stats.skipped_empty} empty); point it at a folder of text files or a corpus.jsonl")
        return report

    def add(self, documents, progress: bool = False) -> IndexReport:
        """Add or replace documents: `Document`s or dicts with id/_id, text, and optional title/metadata."""
        docs = [d if isinstance(d, Document) else _doc_from_dict(d, i) for i, d in enumerate(documents)]
        return self._write(lambda w: w.sync(docs, "api", delete_missing=False, progress=progress))

    def delete(self, ids) -> int:
        """Delete documents by id; returns how many existed."""
        if isinstance(ids, str):
            ids = [ids]
        return self._write(lambda w: w.delete(list(ids)), encoder=None)

    def encode_on_ray(self, address: str | None = "local", **options):
        """Encode this collection's documents on Ray from now on (`hsearch index --ray`): a local Ray, or
        the cluster at `address` (auto, ray://host:10001); bit-identical to encoding here on the same kind
        of device. `options` go to `hsearch.encode.ray_runner.RayBatches` (workdir, actors, cpus_per_actor)."""
        from hsearch.encode.ray_runner import attach_ray

        c = self.config
        return attach_ray(self.encoder, c.model, address, long_context=c.long_context,
                          long_context_length=c.long_context_length, **options)

    def optimize(self) -> dict:
        """Merge every segment into one: deleted chunks leave every store, deleted documents leave
        docs.sqlite (hsearch/merge.py), and BM25 becomes one tantivy segment (BM25Index.compact). Returns
        {merges, segments before/after, bytes before/after}."""
        before = self.info()
        def job(w):
            n = w.merge(everything=True)
            w.compact_bm25()
            w.purge()
            return n

        merges = self._write(job, encoder=None, policy=False)
        after = self.info()
        return {"merges": merges, "segments": [before["segments"], after["segments"]],
                "bytes": [sum(before["bytes"].values()), sum(after["bytes"].values())]}

    def _write(self, job, encoder=_OWN, policy: bool = True):
        w = Writer(self.folder, self.config, self.encoder if encoder is _OWN else encoder, wait=self.lock_wait)
        try:
            out = job(w)
            if policy:  # committed already: a merge that fails leaves it intact, and is retried next write
                try:
                    w.merge()
                except OSError as e:
                    log.warning("segment merge failed (%s); the write is committed, the next one retries", e)
            return out
        finally:
            self._manifest = w.manifest
            w.close()

    # ---- reading ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The latest committed state (re-read when another process committed since).

        Whether anything committed is read from the commit count that writers keep in a shared map (manifest.py,
        COMMITS): a memory read, where asking the file system about the manifest is a system call per query. The
        manifest itself is still checked when the count moved, and at least every REFRESH_S seconds (a writer
        killed between its commit and the count, or a collection without a count)."""
        with self._snapshot_lock:
            seen = self._commits.value() if self._commits is not None else None
            if (seen is not None and seen == self._commits_seen and self._snapshot is not None
                    and time.monotonic() - self._checked < REFRESH_S):
                return self._snapshot
            self._checked = time.monotonic()
            st = os.stat(self._manifest_path)  # a str: no Path built per query
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._snapshot is None or key != self._snapshot_key:
                self._snapshot, self._snapshot_key = self._open_snapshot(), key
                if self._commits is None:  # trusted from the next full check, which reads it before the manifest
                    self._commits = CommitCount.open(self.folder)
            self._commits_seen = seen  # read before the manifest: a commit after that read moves it again
            return self._snapshot

    def _open_snapshot(self) -> Snapshot:
        """A new snapshot. A merge may commit, then remove the segments it replaced, between reading the
        manifest and opening those segments: then the manifest has changed, and is read again."""
        for attempt in range(3):
            manifest = Manifest.load(self.folder)
            try:
                return Snapshot(self.folder, manifest)
            except CollectionError:
                if attempt == 2 or Manifest.load(self.folder).generation == manifest.generation:
                    raise
        raise AssertionError("unreachable")

    def get(self, doc_id: str) -> dict | None:
        """The live document `doc_id` as {id, title, path, text, metadata} (text joined from its chunks),
        or None when there is none."""
        snap = self.snapshot()
        return snap.docs.document(str(doc_id), snap.manifest.doc_segments, snap.dead_docs)

    def ids(self, where=()) -> list[str]:
        """The ids of the live documents, sorted; with `where` (as `search` takes it), those it matches.
        What deleting by a metadata field needs (the LlamaIndex adapter's `delete(ref_doc_id)`)."""
        if isinstance(where, (list, tuple)) and where and isinstance(where[0], str):
            where = parse_where(where)
        snap = self.snapshot()
        live = snap.docs.live_docs(snap.manifest.doc_segments, snap.dead_docs)
        if not where:
            return sorted(live)
        chunks = snap.docs.filtered_chunk_ids(list(where))
        rows = set(snap.doc_rows(chunks[snap.live(chunks)]).tolist())
        return sorted(doc_id for doc_id, (row, _hash, _source) in live.items() if row in rows)

    @property
    def default_mode(self) -> str:
        """The mode of a query that names none: plan.DEFAULT_MODE less what this collection was built without."""
        return default_mode(colbert=self.config.store_colbert, bm25=self.config.bm25)

    @property
    def long_documents(self) -> bool:
        """Whether this collection's documents are long (plan.LONG_DOCUMENTS passages or more on average): min-max
        fusion then takes the model's long-document weights, where it has them."""
        return self.snapshot().passages_per_document >= LONG_DOCUMENTS

    def plan(self, query: str, mode: str | None = None, k: int = 10, where=(), **options) -> Plan:
        """The plan `search` would run, without running it (`describe()` prints it). mode None: `default_mode`."""
        mode = self.default_mode if mode is None else mode
        if isinstance(where, (list, tuple)) and where and isinstance(where[0], str):
            where = parse_where(where)
        if options.get("doc_score") is None and not (isinstance(mode, str) and "@" in mode):
            # a collection built with a long-context method scores both views by default: on passkey
            # with pi:2048, dense Acc@1 averaged over 256-2048 tokens is 0.845 best passage, 0.795 whole,
            # 0.955 both; at 2048 alone 0.84, 0.50, 0.88 (benchmarks/RESULTS.md, "Long documents: passages,
            # whole, both"). Needle: 0.735, 0.375, 0.815 on average; 0.84, 0.16, 0.84 at 2048.
            options["doc_score"] = "both" if self.config.long_context else "maxp"
        # the weights the model's heads were tuned for, as recorded when the collection was built
        options.setdefault("default_weights", self._manifest.encoder.get("fusion_weights") or None)
        if "minmax_long" in (options["default_weights"] or {}):  # worked out only for a plan it decides
            options.setdefault("long_documents", lambda: self.long_documents)
        plan = make_plan(query, mode, k=k, where=where, **options)
        if "colbert" in plan.signals and not self.config.store_colbert:
            raise InputError("this collection was built without multi-vectors (store_colbert=False); "
                             "drop colbert from --mode or rebuild with them")
        if "bm25" in plan.signals and not self.config.bm25:
            raise InputError("this collection was built without BM25; drop bm25 from --mode or rebuild with it")
        if plan.doc_score != "maxp" and not self.config.long_context:
            raise InputError(f"doc_score={plan.doc_score} needs whole-document representations, which a collection "
                             "gets when built with a long-context method (hsearch index --long-context pi:4096 ...); "
                             "this one has passages only: use maxp")
        return plan

    def search(self, query: str, mode: str | None = None, k: int = 10, where=(), **options) -> list[Hit]:
        plan = self.plan(query, mode, k=k, where=where, **options)
        return self.run(plan)

    def run(self, plan: Plan, encoded=None, encoded_whole=None) -> list[Hit]:
        """Execute a plan, with the query pre-encoded when given: `encoded` by the plain model (for
        passages), `encoded_whole` by the long-context one (for whole documents; see `query_encoders`)."""
        snap = self.snapshot()
        need = {s for s in (*plan.signals, *plan.first_stage) if s != "bm25"}  # BM25 reads the query's text
        if need and (encoded is None or (encoded_whole is None and self.config.long_context)):  # (a BM25 plan
            # loads no model)
            plain, whole = self.query_encoders(plan)
            flags = {s: s in need for s in ("dense", "sparse", "colbert")}
            if encoded is None:
                encoded = plain.encode_queries([plan.query], **flags)[0]
            if encoded_whole is None and whole is not None:
                encoded_whole = whole.encode_queries([plan.query], **flags)[0]
        try:
            return execute(plan, snap, encoded, encoded_whole)
        except StaleSnapshot:
            return execute(plan, self.snapshot(), encoded, encoded_whole)

    def query_encoders(self, plan: Plan):
        """(encoder for passages, encoder for whole documents or None): with a long-context method a
        query meets passages encoded by the plain model and whole documents by the extended one."""
        if not self.config.long_context:
            return self.query_encoder, None
        plain = getattr(self.encoder, "passage_encoder", self.encoder)
        return plain, (self.encoder if plan.doc_score != "maxp" else None)

    def info(self) -> dict:
        snap = self.snapshot()
        m = snap.manifest
        size = {part: _disk_bytes(self.folder / part) for part in ("segments", "bm25", "bm25-whole", "docs.sqlite")
                if part != "bm25-whole" or (self.folder / part).exists()}
        live_docs = snap.docs.live_docs(m.doc_segments, snap.dead_docs)
        out = {"collection": str(self.folder), "model": m.encoder.get("name"), "documents": len(live_docs),
               "chunks": snap.n_chunks, "segments": len(m.segments), "generation": m.generation,
               "bytes": size, "heads": _heads(m.encoder), "config": m.config, "default_mode": self.default_mode,
               # raw weighted sums use these unless --weights says otherwise (Collection.plan)
               "default_weights": {**DEFAULT_WEIGHTS, **model_weights(m.encoder.get("fusion_weights"))},
               # runtime/precision of the writes so far (hsearch/encode/precision.py); [] before they were recorded
               "precisions": m.encoder.get("precisions") or []}
        recorded = m.encoder.get("fusion_weights")
        if "minmax_long" in (recorded or {}):
            out["long_documents"] = self.long_documents
        minmax = model_weights(recorded, normalize="minmax", long_documents=out.get("long_documents", False))
        if minmax:  # min-max fusion's, where the model has its own (its long-document ones here, where they apply)
            out["default_weights_minmax"] = {**DEFAULT_WEIGHTS, **minmax}
        if "minmax_low_coverage" in (recorded or {}):  # min-max's weights for a query mostly not in the collection
            out["low_coverage"] = {"below": recorded["low_coverage_below"], "weights": recorded["minmax_low_coverage"]}
        if snap.bm25 is not None and snap.bm25.analyzer is not None:  # which word analyzer BM25 gave how many chunks
            out["bm25_analyzers"] = snap.bm25.counts()
        if snap.has_views:  # a long-context collection: how many chunks each view holds
            ids = np.concatenate([np.arange(s.start, s.end) for s in snap.segments])
            ids = ids[snap.live(ids)]
            out["views"] = {name: int(snap.in_view(ids, flag).sum()) for name, flag in VIEWS.items()}
        return out


def _disk_bytes(path: Path) -> int:
    """Bytes under `path`. A writer may rename or remove files meanwhile (a segment's temporary
    folder becoming final): those are skipped, not an error; sizes are a report, not a snapshot."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk skips folders that vanish while it walks
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _heads(encoder: dict) -> dict:
    from hsearch.encode.base import EncoderSpec

    spec = {k: v for k, v in encoder.items() if k in EncoderSpec.__dataclass_fields__}
    return EncoderSpec(**spec).describe_heads() if spec.get("name") else {}


def _doc_from_dict(d: dict, i: int) -> Document:
    if not isinstance(d, dict):
        raise InputError(f"document {i} is a {type(d).__name__}; pass dicts with 'id' and 'text'")
    doc_id = d.get("id", d.get("_id"))
    text = d.get("text")
    if doc_id is None or not isinstance(text, str) or not text.strip():
        raise InputError(f"document {i} needs an 'id' and a non-empty 'text'")
    try:
        f"{doc_id}{text}{d.get('title') or ''}".encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate (JSON "\ud800") cannot be stored or tokenised
        raise InputError(f"document {i} is not valid Unicode ({e.reason}); decode its source with errors='replace' "
                         "or drop the character") from None
    meta = {k: v for k, v in d.items() if k not in ("id", "_id", "text", "title", "metadata")}
    meta.update(d.get("metadata") or {})
    return Document(id=str(doc_id), text=text, title=str(d.get("title") or ""), path=d.get("path"), metadata=meta)
