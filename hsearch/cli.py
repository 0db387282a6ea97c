"""Thin CLI: each command opens the engine, calls one method, prints. Library errors become clean messages."""
from __future__ import annotations

import functools
import json
import logging
import sys

import click

from hsearch.errors import HsearchError

COLLECTION = click.option("--collection", "-c", default=".hsearch", show_default=True, metavar="DIR",
                          help="Collection folder.")


def _long_context_options(fn):
    """--long-context METHOD[:LENGTH] and --long-context-length N (parsed and checked by the library)."""
    fn = click.option("--long-context-length", type=int, default=None, metavar="N",
                      help="Target length in tokens for --long-context (or write METHOD:N).")(fn)
    return click.option("--long-context", default=None, metavar="METHOD",
                        help="Encode past the model's window without training: native, chunk, mcls, pi, rp, gp "
                             "(any model); ntk, yarn, selfextend (RoPE models); mcls+POS combines (mcls pools the model's own "
                             "way unless pool=cls|mean). e.g. pi:4096, chunk:8192, mcls+rp:4096, "
                             "selfextend:8192,w=512,g=16.")(fn)


def _precision_options(fn):
    """--precision and --runtime (hsearch/encode/precision.py; checked by the library)."""
    fn = click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default=None,
                      help="What runs the encoder: torch, or ONNX Runtime (no torch import; exported once into the "
                           "model cache). Default: $HSEARCH_RUNTIME, else auto (onnx for queries, torch for documents).")(fn)
    return click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]), default=None,
                        help="Number format of the encoder: fp32 (the reference), bf16 (torch; CPUs with AVX512-BF16 "
                             "or AMX, CUDA), fp16 (torch, CUDA), int8 (onnx; opt-in, it costs quality). Default: "
                             "$HSEARCH_PRECISION, else auto (bf16 for documents where the CPU has it, fp32 "
                             "otherwise and for queries).")(fn)


def _doc_score_options(fn):
    """--doc-score maxp|whole|both and --whole-weight W (query and eval)."""
    fn = click.option("--whole-weight", type=float, default=0.5, show_default=True,
                      help="--doc-score both: weight of the whole-document score (the best passage's is 1 minus "
                           "it).")(fn)
    return click.option("--doc-score", type=click.Choice(["maxp", "whole", "both"]), default=None,
                        help="A document's score: its best passage, its whole-document representation (collections "
                             "built with --long-context), or both fused (the default there; elsewhere maxp); a mode "
                             "may carry its own, e.g. dense+bm25@both.")(fn)


def _backend_options(fn):
    """Where the vectors live (hsearch/backends/); checked by the library when the collection is created."""
    options = [
        click.option("--backend", type=click.Choice(["local", "qdrant", "qdrant-edge"]), default="local",
                     show_default=True, help="local: hsearch's own stores; qdrant: qdrant-client (a server or "
                     "cluster by --url, or its local mode in a folder); qdrant-edge: Qdrant's engine in-process."),
        click.option("--url", "backend_url", default=None, metavar="URL|DIR",
                     help="Qdrant server (http://host:6333; API key from $QDRANT_API_KEY), or a folder for an "
                     "embedded engine (default: inside the collection)."),
        click.option("--qdrant-collection", default=None, metavar="NAME",
                     help="Qdrant collection name (default: hsearch-<folder>-<random>)."),
        click.option("--local-multivector", is_flag=True,
                     help="Keep multi-vectors in hsearch's compressed store, not in Qdrant (large corpora)."),
        click.option("--shards", "qdrant_shards", type=int, default=None, help="Qdrant cluster: shard_number."),
        click.option("--replication", "qdrant_replication", type=int, default=None,
                     help="Qdrant cluster: replication_factor."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(format="hsearch: %(message)s", level=logging.WARNING)
        try:
            return fn(*args, **kwargs)
        except HsearchError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; the collection is as it was at its last commit", err=True)
            sys.exit(130)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hsearch")
def main():
    """Hybrid search: dense + learned sparse + multi-vector (+ BM25) from one encoder pass."""


@main.command()
@click.argument("path")
@COLLECTION
@click.option("--model", "-m", default=None, help="Model for a new collection: e5-small (default), minilm, a folder, or a HF id.")
@click.option("--chunk-tokens", type=int, default=None,
              help="Tokens per chunk (default: the model's window, or the long-context length).")
@click.option("--chunk-overlap", type=int, default=64, show_default=True, help="Tokens shared by neighbouring chunks.")
@click.option("--dense-index", type=click.Choice(["auto", "flat", "hnsw"]), default="auto", show_default=True)
@click.option("--colbert-codec", type=click.Choice(["int8", "float16", "float32", "pq"]), default="int8", show_default=True)
@click.option("--no-colbert", is_flag=True, help="Do not store multi-vectors (smaller; no colbert mode).")
@click.option("--no-bm25", is_flag=True, help="Do not build the BM25 index.")
@click.option("--bm25-analyzer", default=None, metavar="NAME",
              help="How BM25 reads text: auto (each document's `lang`, else detected; the default for a new "
              "collection), words, pieces (the model's XLM-R pieces), en_stem, or a stemmer's language (english, "
              "german, ...). An existing collection keeps its own.")
@click.option("--threads", type=int, default=None, help="CPU threads for encoding.")
@click.option("--max-chunks", type=int, default=None, metavar="N",
              help="Index only each document's first N chunks (1: the truncation baseline).")
@_long_context_options
@_backend_options
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Encode on Ray (pip install 'hsearch[ray]'): a local Ray, or the cluster at ADDRESS "
              "(auto, ray://host:10001); bit-identical to encoding here on the same kind of device.")
@_precision_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_handle_errors
def index(path, collection, model, chunk_tokens, chunk_overlap, dense_index, colbert_codec, no_colbert, no_bm25,
          bm25_analyzer, threads, max_chunks, long_context, long_context_length, backend, backend_url, qdrant_collection,
          local_multivector, qdrant_shards, qdrant_replication, ray_address, precision, runtime, quiet):
    """Index a folder (recursively) or a BEIR corpus.jsonl; re-runs encode only new or changed documents."""
    from hsearch.config import CollectionConfig
    from hsearch.engine import open_collection
    from hsearch.ingest.loaders import LoadStats

    config = CollectionConfig(model=model or "e5-small", chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                              dense_index=dense_index, colbert_codec=colbert_codec, store_colbert=not no_colbert,
                              bm25=not no_bm25, bm25_analyzer=bm25_analyzer, long_context=long_context, long_context_length=long_context_length,
                              max_chunks=max_chunks, backend=backend, backend_url=backend_url,
                              qdrant_collection=qdrant_collection, qdrant_multivector=not local_multivector,
                              qdrant_shards=qdrant_shards, qdrant_replication=qdrant_replication)
    col = open_collection(collection, create=True, model=model, config=config, threads=threads,
                          precision=precision, runtime=runtime)
    if ray_address is not None:
        col.encode_on_ray(ray_address)
    stats = LoadStats()
    report = col.index(path, progress=not quiet and sys.stderr.isatty(), stats=stats)
    click.echo(f"{report.summary()} -> {collection}")
    notes = [f"{n} {what}" for n, what in ((stats.skipped_binary, "binary files skipped"),
                                           (stats.skipped_empty, "empty documents skipped"),
                                           (stats.decode_errors, "files not valid UTF-8 (decoded with replacement)"))
             if n]
    if notes:
        click.echo("note: " + "; ".join(notes), err=True)


@main.command()
@click.argument("path")
@COLLECTION
@_precision_options
@click.option("--quiet", "-q", is_flag=True)
@_handle_errors
def add(path, collection, precision, runtime, quiet):
    """Add or replace the documents under PATH, keeping every other document."""
    from hsearch.engine import open_collection
    from hsearch.ingest.loaders import load_path

    col = open_collection(collection, precision=precision, runtime=runtime)
    report = col.add(list(load_path(path)), progress=not quiet and sys.stderr.isatty())
    click.echo(report.summary())


@main.command()
@click.argument("ids", nargs=-1, required=True)
@COLLECTION
@_handle_errors
def delete(ids, collection):
    """Delete documents by id (corpus _id, or path relative to the indexed folder)."""
    from hsearch.engine import open_collection

    n = open_collection(collection).delete(list(ids))
    click.echo(f"{n} of {len(ids)} documents deleted")


@main.command()
@click.argument("text")
@COLLECTION
@click.option("--mode", default=None,
              help="dense, sparse, colbert, bm25 joined by '+', or 'all' (= dense+sparse+colbert). Default: all+bm25, "
                   "less what the collection was built without (`hsearch info` shows it).")
@click.option("--k", "-k", default=10, show_default=True, help="Documents to return.")
@click.option("--depth", default=100, show_default=True, help="Candidates each first-stage signal retrieves.")
@click.option("--ef-search", type=int, default=None,
              help="HNSW search effort of dense segments of 10k chunks or more (default 192; higher: better recall, slower).")
@click.option("--fusion", type=click.Choice(["weighted", "rrf"]), default="weighted", show_default=True)
@click.option("--weights", default=None, help="e.g. dense=0.4,sparse=0.2 (default: the weights its model's heads were tuned for, else BGE-M3's 0.4/0.2/0.4).")
@click.option("--normalize", type=click.Choice(["none", "minmax", "dbsf"]), default=None,
              help="Score normalisation before a weighted sum (default: none; minmax when bm25 is fused).")
@click.option("--rrf-k", default=60, show_default=True)
@click.option("--low-coverage", default=None, metavar="T:WEIGHTS",
              help="Min-max weights for a query the collection holds under a share T of the BM25 terms of (one in "
                   "another language than the documents), e.g. 0.5:colbert=1, or off. Default: the model's own.")
@click.option("--where", multiple=True, help="Filter: FIELD=VALUE, FIELD>N, path~GLOB (repeatable, AND).")
@_doc_score_options
@click.option("--explain", is_flag=True, help="Print the plan and each hit's per-signal scores.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--model", "-m", default=None, help="Another name for the model that built the collection (e.g. "
              "e5-small-base for a collection built before e5-small had heads); default: the collection's own.")
@_precision_options
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Send the query to a running `hsearch serve` (API key from $HSEARCH_API_KEY). Without it, a "
                   "server serving this collection is used when its server.json names a live process.")
@click.option("--local", is_flag=True, help="Search in this process even when a server serves the collection.")
@_handle_errors
def query(text, collection, mode, k, depth, ef_search, fusion, weights, normalize, rrf_k, low_coverage, where, doc_score,
          whole_weight, explain, as_json, model, precision, runtime, server_url, local):
    """Search the collection (through its running server when there is one)."""
    options = dict(k=k, where=list(where), depth=depth, fusion=fusion, weights=weights, normalize=normalize,
                   rrf_k=rrf_k, doc_score=doc_score, whole_weight=whole_weight, ef_search=ef_search,
                   **({"low_coverage": low_coverage} if low_coverage is not None else {}))
    answer = None if local else _query_server(server_url, collection, {"query": text, "mode": mode, **options,
                                                                       "explain": explain})
    if answer is not None:
        hits, plan_text = answer["hits"], f"{answer.get('plan')}\n(answered by the server at {answer['server']})"
    else:
        from hsearch.engine import open_collection
        from hsearch.index.compiled import use_compiled

        use_compiled(False)  # one query, then exit: numba's import would cost more than it saves
        col = open_collection(collection, model=model, precision=precision, runtime=runtime)
        plan = col.plan(text, mode, **options)
        hits = [{"id": h.id, "score": h.score, "scores": h.scores, "snippet": h.snippet, "path": h.path,
                 "title": h.title, "chunk": h.chunk, "metadata": h.metadata} for h in col.run(plan)]
        plan_text = plan.describe()
    if as_json:
        click.echo(json.dumps(hits, ensure_ascii=False, indent=1))
        return
    if explain:
        click.echo(plan_text + "\n")
    if not hits:
        click.echo("no results")
    for rank, h in enumerate(hits, 1):
        where_ = f"  ({h['path']})" if h["path"] and h["path"] != h["id"] else ""
        click.echo(f"{rank:>3}. {h['score']:8.4f}  {h['id']}{where_}")
        if explain:
            click.echo("      " + "  ".join(f"{s}={v:.4f}" for s, v in h["scores"].items()) + f"  chunk={h['chunk']}")
        click.echo(f"      {h['snippet']}")


def _query_server(url, collection, body):
    """The server's answer, or None to search in this process: no --server given and no live server.json
    (or its server no longer answers: a pid reused by another process)."""
    import os

    from hsearch.server import client

    running = None if url else client.running_server(collection)
    if url is None and running is None:
        return None
    target = url or running["url"]
    try:
        answer = client.query(target, (running or {}).get("name") or client.collection_name(collection), body,
                              api_key=os.environ.get("HSEARCH_API_KEY"))
    except client.ServerError as e:
        if url is None and e.status is None:  # found through server.json, but nothing answers there
            return None
        raise
    return {**answer, "server": target}


@main.command()
@click.option("--collection", "-c", "collections", multiple=True, metavar="DIR",
              help="A collection folder to serve (repeatable; default .hsearch). Served under its folder's name.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default answers this machine only. 0.0.0.0 exposes it: set an API key.")
@click.option("--port", default=8765, show_default=True)
@click.option("--api-key", envvar="HSEARCH_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' (default: $HSEARCH_API_KEY; none: no key).")
@click.option("--max-body", type=int, default=16 * 1024 * 1024, show_default=True, help="Largest request body, bytes.")
@_precision_options
@_handle_errors
def serve(collections, host, port, api_key, max_body, precision, runtime):
    """Serve collections over HTTP: query, documents, info, /v1/embeddings, a search page at /, docs at /docs."""
    try:
        from hsearch.server.run import serve as run
    except ImportError as e:
        raise click.ClickException(f"the server needs its extra ({e.name} is missing): "
                                   "pip install 'hsearch[server]'") from None

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo(f"warning: serving on {host} without an API key: anyone who reaches this port can read and "
                   "write the collections (set --api-key or $HSEARCH_API_KEY)", err=True)

    def ready(url):
        click.echo(f"serving {', '.join(collections or ('.hsearch',))} at {url} (docs: {url}/docs); Ctrl-C stops",
                   err=True)

    run(collections or (".hsearch",), host=host, port=port, api_key=api_key, max_body=max_body, ready=ready,
        precision=precision, runtime=runtime)


@main.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--model", "-m", default="e5-small", show_default=True)
@click.option("--query", "is_query", is_flag=True, help="Encode as queries (query prefix) instead of documents.")
@click.option("--max-length", type=int, default=None,
              help="Token limit (default: the model's window, or the long-context length).")
@click.option("--tokens", is_flag=True, help="Sparse keys as token strings instead of ids.")
@_long_context_options
@_precision_options
@_handle_errors
def embed(texts, model, is_query, max_length, tokens, long_context, long_context_length, precision, runtime):
    """Print the three representations of TEXTS as JSON ('-' reads one text per line from stdin)."""
    from hsearch.encode import load_encoder

    if texts == ("-",):
        texts = tuple(line.rstrip("\n") for line in sys.stdin if line.strip())
    enc = load_encoder(model, long_context=long_context, long_context_length=long_context_length,
                       precision=precision, runtime=runtime, purpose="queries" if is_query else "documents")
    out = []
    for r in enc.encode(list(texts), is_query=is_query, max_length=max_length):
        sparse = {(enc.tokenizer.convert_ids_to_tokens(t) if tokens else str(t)): round(w, 6)
                  for t, w in r.sparse.items()}
        out.append({"dense": [round(float(x), 7) for x in r.dense], "sparse": sparse,
                    "colbert": [[round(float(x), 7) for x in row] for row in r.colbert]})
    click.echo(json.dumps(out, ensure_ascii=False))
    missing = {k: v for k, v in enc.spec.describe_heads().items() if v.startswith("missing")}
    for head, note in missing.items():
        click.echo(f"note: {head} head {note}", err=True)


@main.command()
@COLLECTION
@_handle_errors
def optimize(collection):
    """Merge every segment into one (BM25's too) and drop deleted documents' vectors and texts from disk and
    from BM25's statistics (writes merge small segments on their own; one segment is the fastest to query)."""
    from hsearch.engine import open_collection

    r = open_collection(collection).optimize()
    (s0, s1), (b0, b1) = r["segments"], r["bytes"]
    click.echo(f"{s0} segment(s) -> {s1}; {b0 / 2**20:.1f} MiB -> {b1 / 2**20:.1f} MiB on disk")


@main.command()
@COLLECTION
@_handle_errors
def info(collection):
    """Show what a collection holds: model, heads, counts, size on disk per store."""
    from hsearch.engine import open_collection

    click.echo(json.dumps(open_collection(collection).info(), indent=1, ensure_ascii=False))


@main.command()
def models():
    """List the bundled model names."""
    from hsearch.encode.loader import ALIASES

    for name, desc in ALIASES.items():
        click.echo(f"{name:22} {desc}")


@main.command(name="eval")
@click.argument("dataset", required=False)
@click.option("--mode", default="dense,sparse,dense+sparse", show_default=True,
              help="Comma-separated modes, each as in `query` (e.g. dense,bm25,dense+sparse,all).")
@click.option("--model", "-m", default=None,
              help="Model: e5-small (default), minilm, a folder; an existing --collection keeps its own.")
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score on.")
@click.option("--limit-queries", type=int, default=None, help="Only the first N queries (by id).")
@click.option("--k", "-k", default=100, show_default=True, help="Documents retrieved per query.")
@click.option("--depth", type=int, default=None, help="Candidates each first-stage signal retrieves (default 100).")
@click.option("--fusion", type=click.Choice(["weighted", "rrf"]), default="weighted", show_default=True)
@click.option("--weights", default=None, help="e.g. dense=0.4,sparse=0.2 (default: the weights its model's heads were tuned for, else BGE-M3's 0.4/0.2/0.4).")
@click.option("--normalize", type=click.Choice(["none", "minmax", "dbsf"]), default=None)
@_doc_score_options
@click.option("--collection", "-c", default=None, metavar="DIR",
              help="Collection to build or reuse (default: a cache under $HSEARCH_CACHE/eval).")
@click.option("--sweep-weights", is_flag=True, help="Tune fused modes' weights on --sweep-split first.")
@click.option("--sweep-split", default=None, help="Split to tune on (default: dev if present, else train).")
@click.option("--synthetic", type=click.Choice(["passkey", "needle"]), default=None,
              help="Run a LongEmbed-style synthetic task instead of DATASET (metric Acc@1).")
@click.option("--lengths", default="256,512,1024,2048", show_default=True,
              help="Synthetic lengths in tokens (LongEmbed uses 256 ... 32768).")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic task.")
@click.option("--write-beir", "write_dir", default=None, metavar="DIR",
              help="Write the synthetic task as BEIR folders DIR/<task>-<length> and stop.")
@click.option("--max-chunks", type=int, default=None, metavar="N",
              help="Index only each document's first N chunks (1: LongEmbed's truncation baseline).")
@_long_context_options
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_precision_options
@_handle_errors
def eval_(dataset, mode, model, split, limit_queries, k, depth, fusion, weights, normalize, doc_score, whole_weight,
          collection, sweep_weights, sweep_split, synthetic, lengths, seed, write_dir, max_chunks, long_context,
          long_context_length, as_json, quiet, precision, runtime):
    """Score modes on a BEIR folder (nDCG@10, Recall@100, MRR@10) or a synthetic task (Acc@1)."""
    from pathlib import Path

    from hsearch.errors import InputError

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    progress = not quiet and sys.stderr.isatty()
    config = None  # None: an existing --collection keeps its own settings
    if long_context is not None or long_context_length is not None or max_chunks is not None:
        from hsearch.config import CollectionConfig

        config = CollectionConfig(long_context=long_context, long_context_length=long_context_length,
                                  max_chunks=max_chunks)
    if synthetic:
        from hsearch.evaluate.synthetic import generate, parse_lengths, run_synthetic, write_beir

        if write_dir:
            for n in parse_lengths(lengths):
                click.echo(write_beir(generate(synthetic, n, seed), Path(write_dir) / f"{synthetic}-{n}"))
            return
        result = run_synthetic(synthetic, parse_lengths(lengths), modes, model=model, seed=seed, config=config,
                               progress=progress, doc_score=doc_score, whole_weight=whole_weight)
    else:
        if not dataset:
            raise InputError("give a DATASET folder (BEIR layout), or --synthetic passkey|needle")
        from hsearch.evaluate.beir import evaluate

        result = evaluate(dataset, modes, model=model, split=split, k=k, limit_queries=limit_queries,
                          collection_dir=collection, fusion=fusion, weights=weights, normalize=normalize,
                          depth=depth, config=config, sweep=sweep_weights, sweep_split=sweep_split,
                          progress=progress, doc_score=doc_score, whole_weight=whole_weight, precision=precision,
                          runtime=runtime)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    from hsearch.evaluate.table import format_scores

    click.echo(format_scores(result))


@main.command()
@click.option("--model", "-m", default="e5-small", show_default=True, help="The encoder whose heads to train.")
@click.option("--out", "-o", required=True, metavar="DIR", help="New folder for the trained model (BGE-M3 format).")
@click.option("--beir", multiple=True, metavar="DATASET[:SPLIT]",
              help="Labelled pairs from a BEIR folder's qrels (default split train; test is refused). Repeatable.")
@click.option("--pairs", "pairs_from", multiple=True, metavar="CORPUS",
              help="Unsupervised title -> body pairs from any folder or corpus.jsonl. Repeatable.")
@click.option("--colbert-dim", type=int, default=None, help="Multi-vector size (default: the hidden size; 128 "
              "shrinks the token store).")
@click.option("--epochs", default=1, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--temperature", default=0.05, show_default=True)
@click.option("--hard-negatives", default=3, show_default=True, help="Mined per pair from BM25 and dense top 30.")
@click.option("--max-batch", default=32, show_default=True, help="Pairs per batch (fewer for long documents).")
@click.option("--no-distill", is_flag=True, help="Train each head alone on the labels (no self-distillation).")
@click.option("--full", is_flag=True, help="Fine-tune the transformer too (for a GPU); default: frozen, states cached.")
@click.option("--limit", type=int, default=None, help="At most N pairs per source (a seeded sample).")
@click.option("--fresh-heads", is_flag=True, help="Start from untrained heads even when the model has trained "
              "ones (default: go on training the model's own heads, e.g. to adapt them to a corpus).")
@click.option("--max-steps", type=int, default=None, help="Stop after N steps (a smoke run).")
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
@_handle_errors
def train(model, out, beir, pairs_from, colbert_dim, epochs, lr, temperature, hard_negatives, max_batch, no_distill,
          full, limit, fresh_heads, max_steps, seed, quiet):
    """Train the sparse and multi-vector heads (BGE-M3 self-distillation); resumes from OUT.work/."""
    from hsearch.train import TrainConfig
    from hsearch.train import train as run

    config = TrainConfig(colbert_dim=colbert_dim, epochs=epochs, lr=lr, temperature=temperature,
                         hard_negatives=hard_negatives, max_batch=max_batch, distill=not no_distill, full=full,
                         seed=seed, limit=limit, fresh=fresh_heads)
    card = run(model, out, config, beir=beir, pairs_from=pairs_from, progress=not quiet and sys.stderr.isatty(),
               max_steps=max_steps)
    click.echo(f"{card['pairs']} pairs from {', '.join(card['data'])}; {card['steps']} steps -> {out} "
               f"(use it as --model {out})")
    fusion = card.get("fusion")
    if isinstance(fusion, dict):
        click.echo("fusion weights (fusion.json), chosen on " + fusion["chosen_on"] + ": sparse "
                   f"{fusion['weights']['sparse']:g} in raw sums; min-max "
                   + ", ".join(f"{s}={w:g}" for s, w in fusion["weights_minmax"].items()))
    elif fusion:
        click.echo(f"fusion weights {fusion}")

if __name__ == "__main__":
    main()
