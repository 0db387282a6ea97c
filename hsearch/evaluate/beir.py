"""Evaluate search modes on a BEIR-layout dataset; metrics come from ir-measures, never by hand.

    from hsearch.evaluate.beir import evaluate
    evaluate("../shared/datasets/scifact", ["bm25", "dense", "dense+sparse"], model="e5-small")
    # -> {"bm25": {"nDCG@10": 0.66, "Recall@100": 0.9, "MRR@10": 0.63}, "dense": {...}, ...}

The corpus is indexed once into a cached collection (see `eval_collection`); each query is encoded
once and every mode's plan runs from that encoding.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import ir_measures
import numpy as np
from ir_measures import RR, R, nDCG

from hsearch.config import CollectionConfig
from hsearch.errors import InputError

log = logging.getLogger("hsearch")
MEASURES = {"nDCG@10": nDCG @ 10, "Recall@100": R @ 100, "MRR@10": RR @ 10}
NO_HIT = "\x00no-hit"  # stands in for an empty result list, so such a query counts as 0, not as absent
GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class BeirData:
    folder: Path
    corpus: Path
    split: str
    queries: dict[str, str]  # only queries with qrels in the split, sorted by id
    qrels: dict[str, dict[str, int]]


def available_splits(folder: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / "qrels").glob("*.tsv"))


def load_beir(folder: str | Path, split: str = "test", limit_queries: int | None = None) -> BeirData:
    """Read corpus path, queries and qrels/<split>.tsv; keep the queries that have qrels (first N by id)."""
    folder = Path(folder).expanduser()
    if limit_queries is not None and limit_queries < 1:
        raise InputError(f"limit_queries must be at least 1, got {limit_queries}")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file():
            raise InputError(f"{folder} has no {name}; a BEIR dataset folder holds corpus.jsonl, queries.jsonl "
                             "and qrels/<split>.tsv")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        have = available_splits(folder)
        raise InputError(f"{folder} has no qrels for split {split!r}; available splits: "
                         f"{', '.join(have) if have else 'none (no qrels/*.tsv)'}")
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(qrels_file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or (n == 1 and parts[0].strip() == "query-id"):
            continue
        try:
            qid, did, rel = parts[0].strip(), parts[1].strip(), int(float(parts[2]))
        except (IndexError, ValueError):
            raise InputError(f"{qrels_file} line {n} is not 'query-id<TAB>corpus-id<TAB>score'") from None
        qrels.setdefault(qid, {})[did] = rel
    texts = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"{folder / 'queries.jsonl'} line {n} is not valid JSON") from None
                qid = str(rec.get("_id", rec.get("id")))
                if qid in qrels and str(rec.get("text", "")).strip():
                    texts[qid] = str(rec["text"])
    ids = sorted(texts)[:limit_queries] if limit_queries else sorted(texts)
    if not ids:
        raise InputError(f"no query in {folder / 'queries.jsonl'} has qrels in split {split!r}")
    return BeirData(folder, folder / "corpus.jsonl", split, {q: texts[q] for q in ids}, {q: qrels[q] for q in ids})


def score(run: dict, qrels: dict, measures: dict = MEASURES) -> dict[str, float]:
    """Aggregate `measures` ({name: ir_measures measure}) of `run` over every query in `qrels`."""
    run = {q: run.get(q) or {NO_HIT: 0.0} for q in qrels}
    agg = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    return {name: float(agg[m]) for name, m in measures.items()}


def eval_collection(corpus: Path, model: str | None, config: CollectionConfig | None = None,
                    collection_dir: str | Path | None = None, progress: bool = False,
                    precision: str | None = None, runtime: str | None = None):
    """Open (or build) the collection for `corpus` and re-sync it (a no-op when nothing changed).

    Default folder: $HSEARCH_CACHE/eval/<hash of model fingerprint, settings, corpus path, and how the
    documents are encoded when that is not torch fp32>, so any dataset folder that shares a corpus file
    (even through a symlink) shares the collection. `precision` / `runtime`: hsearch/encode/precision.py.
    """
    from hsearch.encode.loader import _fingerprint, resolve_model_dir
    from hsearch.encode.precision import choose
    from hsearch.engine import open_collection
    from hsearch.storage.manifest import MANIFEST

    if model is not None and Path(model).expanduser().exists():  # a folder: store it absolute so the cache works from any cwd
        model = str(Path(model).expanduser().resolve())
    corpus = Path(corpus).expanduser().resolve()
    if collection_dir is not None and config is None and (Path(collection_dir).expanduser() / MANIFEST).exists():
        # A collection the user built (e.g. `hsearch index --colbert-codec float32`): its own settings hold.
        col = open_collection(collection_dir, model=model, precision=precision, runtime=runtime)
    else:
        config = config or CollectionConfig()
        config = replace(config, model=model or config.model)
        if collection_dir is None:
            # Only settings that differ from their defaults enter the key, so adding a setting to hsearch
            # (with a default that keeps the old behaviour) does not orphan every cached collection.
            default = CollectionConfig().to_dict()
            settings = {k: v for k, v in config.to_dict().items() if k == "model" or v != default[k]}
            key = [_fingerprint(resolve_model_dir(config.model)), settings, str(corpus)]
            encoding = str(choose(precision, runtime, "documents"))  # bf16 vectors are not fp32's
            if encoding != "torch/fp32":  # left out for fp32: the collections cached before stay valid
                key.append(encoding)
            if encoding.startswith("onnx/"):  # a new graph format encodes differently
                from hsearch.encode.onnx_export import EXPORT_FORMAT

                key.append(f"export-{EXPORT_FORMAT}")
            key = json.dumps(key, sort_keys=True)
            root = Path(os.environ.get("HSEARCH_CACHE") or Path.home() / ".cache" / "hsearch")
            collection_dir = root / "eval" / hashlib.sha256(key.encode()).hexdigest()[:16]
        col = open_collection(collection_dir, create=True, model=config.model, config=config, precision=precision,
                              runtime=runtime)
        if config.bm25_analyzer is None and col.config.bm25 and col.config.bm25_analyzer == "en_stem":
            # left unset, the analyzer is not in the key: a collection cached before analyzers keeps en_stem
            log.warning("%s was cached before BM25 analyzers: its BM25 reads every language with en_stem (new "
                        "collections get auto); delete that folder to rebuild it", collection_dir)
    col.index(corpus, progress=progress)
    return col


def check_modes(modes, **plan_options) -> list[str]:
    """The modes, duplicates dropped, after checking each makes a plan (before any costly indexing)."""
    from hsearch.query.plan import make_plan

    modes = list(dict.fromkeys(modes))
    if not modes:
        raise InputError("no mode given; e.g. dense,sparse,dense+sparse")
    for m in modes:
        make_plan("probe", m, **plan_options)
    return modes


def run_modes(col, queries: dict[str, str], modes, k: int = 100, weights_by_mode: dict | None = None,
              progress: bool = False, **plan_options) -> dict[str, dict[str, list]]:
    """{mode: {query id: [Hit, ...]}}: every query encoded once, every mode's plan run from it."""
    from hsearch.types import Encoded

    first = next(iter(queries.values()))
    opts = {m: {**plan_options, **({"weights": weights_by_mode[m]} if m in (weights_by_mode or {}) else {})}
            for m in modes}
    probe = {m: col.plan(first, m, k=k, **opts[m]) for m in modes}  # bad modes fail before any encoding
    need = set().union(*(set(p.signals) | set(p.first_stage) for p in probe.values())) - {"bm25"}
    qids = list(queries)
    # passages meet queries encoded by the plain model, whole documents by the long-context one
    encoders = {col.query_encoders(p)[i] for p in probe.values() for i in (0, 1)} - {None}
    encoded = {e: e.encode_queries([queries[q] for q in qids], dense="dense" in need, sparse="sparse" in need,
                                   colbert="colbert" in need, progress=progress)
               if need else [Encoded() for _ in qids]  # bm25 alone needs no model pass
               for e in encoders}
    out = {m: {} for m in modes}
    for j, qid in enumerate(qids):
        for m in modes:
            plan = col.plan(queries[qid], m, k=k, **opts[m])
            plain, whole = col.query_encoders(plan)
            out[m][qid] = col.run(plan, encoded=encoded[plain][j],
                                  encoded_whole=encoded[whole][j] if whole is not None else None)
    return out


def as_run(hits_by_query: dict[str, list]) -> dict[str, dict[str, float]]:
    # Rank-derived scores (n, n-1, ...) keep our order exactly: trec_eval would break score ties by doc id.
    return {q: {h.id: float(len(hits) - r) for r, h in enumerate(hits)} for q, hits in hits_by_query.items()}


def weight_grid(signals) -> list[dict[str, float]]:
    """Every combination of GRID values per signal, scaled to sum 1, all-zero and duplicates dropped."""
    seen, out = set(), []
    for combo in itertools.product(GRID, repeat=len(signals)):
        if sum(combo) > 0:
            w = tuple(round(x / sum(combo), 6) for x in combo)
            if w not in seen:
                seen.add(w)
                out.append(dict(zip(signals, w)))
    return out


def fusion_columns(raw: np.ndarray, fusion: str, norm: str, rrf_k: int = 60) -> np.ndarray:
    """Candidates' per-signal scores [candidates, signals] as a fusion adds them up: normalised over the
    candidates, or 1/(rrf_k + rank) for RRF; a weighted sum of the columns is then the fused score."""
    from hsearch.query.fusion import normalize, rrf

    if not len(raw):
        return raw
    cols = [rrf({"s": raw[:, i]}, rrf_k) if fusion == "rrf" else normalize(raw[:, i], norm) for i in range(raw.shape[1])]
    return np.stack(cols, axis=1)


def chunk_tables(col, queries: dict[str, str], mode: str, **plan_options) -> tuple[tuple[str, ...], dict]:
    """The mode's signals, and per query every candidate chunk of `mode` (in chunk id order) with its raw
    per-signal scores [chunks, signals] and its document's id: all that a fusion of those signals ranks, whatever its weights
    (which chunks are candidates does not depend on them). Passages only (doc_score maxp)."""
    from hsearch.query.execute import candidates
    from hsearch.types import PASSAGE, Encoded

    qids = list(queries)
    plan = col.plan(queries[qids[0]], mode, **plan_options)
    if plan.doc_score != "maxp":
        raise InputError(f"weight sweeps tune the signal weights of passages (doc_score maxp), not of {mode!r} "
                         f"with doc_score {plan.doc_score}")
    need = (set(plan.signals) | set(plan.first_stage)) - {"bm25"}
    encoded = col.query_encoders(plan)[0].encode_queries(
        [queries[q] for q in qids], dense="dense" in need, sparse="sparse" in need, colbert="colbert" in need) \
        if need else [Encoded() for _ in qids]
    snap = col.snapshot()
    view = PASSAGE if snap.has_views else None
    # document row -> id, read once (not each query's candidate texts)
    doc_id = {row: d for d, (row, _hash, _source) in snap.docs.live_docs(snap.manifest.doc_segments, snap.dead_docs).items()}
    out = {}
    for q, enc in zip(qids, encoded):
        ids, table = candidates(col.plan(queries[q], mode, **plan_options), snap, enc, view)
        out[q] = (np.stack([table[s] for s in plan.signals], axis=1).astype(np.float64).reshape(len(ids), len(plan.signals)),
                  [doc_id[r] for r in snap.doc_rows(ids).tolist()])
    return plan.signals, out


def grid_ndcg(cols: dict, docs: dict, qrels: dict, grid: np.ndarray) -> np.ndarray:
    """Mean nDCG@10 (linear gains, as trec_eval's ndcg_cut) of every weight vector (rows of `grid`) at once.
    Per query, the candidates' fusion columns `cols[q]` [chunks, signals] (`fusion_columns`, rows in chunk id
    order as `chunk_tables` gives them) are fused and ranked as the engine ranks them (ties: the smaller
    chunk id), and documents (`docs[q]`: each chunk's document id) in the order of their best chunks."""
    total = np.zeros(len(grid))
    for q, rel in qrels.items():
        ideal = np.sort(np.array([g for g in rel.values() if g > 0], np.float64))[::-1][:10]
        idcg = (ideal / np.log2(np.arange(2, len(ideal) + 2))).sum()
        if q not in cols or idcg == 0 or not len(docs[q]):
            continue
        names, inverse = np.unique(np.asarray(docs[q], dtype=object), return_inverse=True)
        # rounded, so that sums which tie in exact arithmetic tie here too
        order = np.argsort(-np.round(cols[q] @ grid.T, 12), axis=0, kind="stable")  # [chunks, points]
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(order))[:, None], axis=0)  # each chunk's place, per point
        by_doc = np.argsort(inverse, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(inverse[by_doc]) != 0])
        first = np.minimum.reduceat(rank[by_doc], starts, axis=0)  # [documents, points]: its best chunk's place
        gains = np.array([max(rel.get(d, 0), 0) for d in names], np.float64)
        top = np.argsort(first, axis=0)[:10]
        disc = 1 / np.log2(np.arange(2, top.shape[0] + 2))
        total += (gains[top] * disc[:, None]).sum(0) / idcg
    return total / len(qrels)


def sweep_weights(col, data: BeirData, mode: str, k: int = 100, **plan_options) -> dict:
    """Grid-search fusion weights of a fused `mode` on `data` (a dev/train split), by nDCG@10.

    Retrieval runs once per query, keeping every candidate chunk with its per-signal scores (`chunk_tables`);
    each grid point then re-fuses those scores in numpy (`grid_ndcg`). Fusion is linear in the weights once
    each signal is normalised (or turned into 1/(rrf_k + rank)), so one matrix product per query replaces a
    retrieval per point.
    """
    plan = col.plan(next(iter(data.queries.values())), mode, k=k, **plan_options)
    if len(plan.signals) < 2:
        raise InputError(f"mode {mode!r} has one signal; there are no weights to sweep")
    signals, tables = chunk_tables(col, data.queries, mode, k=k, **plan_options)
    cols = {q: fusion_columns(m, plan.fusion, plan.normalize, plan.rrf_k) for q, (m, _d) in tables.items()}
    grid = weight_grid(signals)
    got = grid_ndcg(cols, {q: d for q, (_m, d) in tables.items()}, data.qrels,
                    np.array([[w[s] for s in signals] for w in grid]))
    best = int(np.argmax(got))  # ties keep the earlier grid point
    return {"weights": grid[best], "split": data.split, "nDCG@10": float(got[best]), "points": len(grid)}


def evaluate(dataset_dir: str | Path, modes: list[str], model: str | None = None, split: str = "test",
             k: int = 100, limit_queries: int | None = None, collection_dir: str | Path | None = None,
             fusion: str = "weighted", weights: str | dict | None = None, normalize: str | None = None,
             depth: int | None = None, config: CollectionConfig | None = None, sweep: bool = False,
             sweep_split: str | None = None, progress: bool = False, doc_score: str | None = None,
             whole_weight: float = 0.5, precision: str | None = None, runtime: str | None = None,
             low_coverage=None) -> dict[str, dict]:
    """{mode: {"nDCG@10", "Recall@100", "MRR@10"}} for each mode string (as given) on `split`.
    low_coverage: the plans' (hsearch.query.plan.parse_low_coverage; None: the collection's model's).

    With sweep=True each fused mode's weights are tuned on `sweep_split` (default: dev if present,
    else train; never the evaluation split; see `sweep_weights`) and the mode is scored on `split` with the best ones;
    its entry gains "weights" and "sweep" ({"split", "nDCG@10", "points"}).
    """
    options = {"fusion": fusion, "weights": weights, "normalize": normalize, "doc_score": doc_score,
               "whole_weight": whole_weight, **({"depth": depth} if depth else {}),
               **({"low_coverage": low_coverage} if low_coverage is not None else {})}
    modes = check_modes(modes, k=k, **options)
    data = load_beir(dataset_dir, split, limit_queries)
    dev = None
    if sweep:
        have = available_splits(dataset_dir)
        sweep_split = sweep_split or next((s for s in ("dev", "train") if s in have and s != split), None)
        if sweep_split is None:
            raise InputError(f"no dev or train qrels besides {split!r} to sweep weights on (splits: "
                             f"{', '.join(have)}); pass --sweep-split with another split")
        if sweep_split == split:
            raise InputError(f"refusing to sweep weights on the evaluation split {split!r}: tuned scores would "
                             "be optimistic; pass --sweep-split with another split")
        dev = load_beir(dataset_dir, sweep_split, limit_queries)
    col = eval_collection(data.corpus, model, config, collection_dir, progress, precision, runtime)
    tuned = {}
    if dev is not None:
        for m in modes:
            if len(col.plan("probe", m, k=k, **options).signals) > 1:
                tuned[m] = sweep_weights(col, dev, m, k=k, **options)
    weights_by_mode = {m: t["weights"] for m, t in tuned.items()}
    hits = run_modes(col, data.queries, modes, k=k, weights_by_mode=weights_by_mode, progress=progress, **options)
    out = {}
    for m in modes:
        out[m] = score(as_run(hits[m]), data.qrels)
        if m in tuned:
            out[m]["weights"] = tuned[m]["weights"]
            out[m]["sweep"] = {key: tuned[m][key] for key in ("split", "nDCG@10", "points")}
    return out
