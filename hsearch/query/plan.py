"""Parse a query request into a readable plan; execution lives in execute.py.

The default plan follows the BGE-M3 protocol: every first-stage signal (dense, sparse, bm25)
retrieves its own top-`depth`, the union is re-scored by every requested signal and fused;
`colbert` never retrieves on its own: alone it re-ranks the dense top-`colbert_depth`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from hsearch.errors import InputError
from hsearch.types import SIGNALS

from .fusion import FUSIONS, NORMALIZERS

FIRST_STAGE = ("dense", "sparse", "bm25")
# BGE-M3 README's weights for dense/sparse/colbert ([0.4, 0.2, 0.4]); bm25 joins with weight 0.4
# and forces min-max normalisation, because its raw scores are not on the [0, 1]-ish scale of the others.
DEFAULT_WEIGHTS = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4, "bm25": 0.4}
# The mode a query runs when it names none: every signal, fused by min-max with the model's held-out weights.
# Chosen on the held-out Debian sets (benchmarks/RESULTS.md, "Fusion weights for every signal"): nDCG@10 0.9092
# there against 0.8863 for dense+sparse (the default before) and 0.9048 for MaxSim alone; on SciFact it costs
# 18 ms a query against 1.9 ms, query encoding excluded ("The default mode", same file). A collection built
# without multi-vectors or BM25 runs it without them (`default_mode`).
DEFAULT_MODE = "all+bm25"
# A collection whose documents average this many passages or more is one of long documents: min-max fusion
# takes the model's long-document weights there, where it has them (fusion.json "weights_minmax_long", chosen
# on QMSum's train queries). A judgment, not a measurement: the sets measured lie far on either side (SciFact
# ~1.1 passages a document, the held-out Debian sets 1, QMSum ~34) and none in between.
LONG_DOCUMENTS = 4
DOC_SCORES = ("maxp", "whole", "both")


@dataclass(frozen=True)
class Plan:
    query: str
    signals: tuple[str, ...]  # every signal that scores the candidates
    first_stage: tuple[str, ...]  # signals that retrieve candidates
    depth: int  # candidates each first-stage signal retrieves
    k: int  # documents returned
    fusion: str = "weighted"
    normalize: str = "none"
    weights: dict = field(default_factory=dict)
    rrf_k: int = 60
    where: tuple = ()
    # How a document scores (a collection built with a long-context method has both views, types.py):
    # maxp: its best passage; whole: its whole-document representation; both: the two fused.
    # make_plan takes None as maxp; Collection.plan makes it both in a long-context collection.
    doc_score: str = "maxp"
    whole_weight: float = 0.5  # both: weight of the whole-document score (the best passage's is 1 - this)
    ef_search: int | None = None  # HNSW dense segments: candidates the graph search keeps (None: dense.EF_SEARCH)
    # (t, weights) or (): a query fewer than a share t of whose BM25 terms the collection holds (a query in
    # another language than the documents: BM25Index.coverage) is fused with these weights instead (execute.py)
    low_coverage: tuple = ()

    @property
    def cuts_at_k(self) -> bool:
        """Whether the plan first retrieves only `cut_depth` chunks: one signal both retrieves and ranks, and one
        view ranks the documents (both views fuse the document scores of each: each union must be whole).
        The short list stands when every chunk it left out scores below its k-th document (execute.py);
        else the plan retrieves its full depth."""
        return (len(self.signals) == 1 and self.first_stage == self.signals and self.doc_score != "both"
                and self.depth > self.cut_depth)

    @property
    def cut_depth(self) -> int:
        return 2 * self.k

    def describe(self) -> str:
        first = ', '.join(f'{s} top-{self.depth}' for s in self.first_stage)
        if self.cuts_at_k:
            first = (f"{self.first_stage[0]} top-{self.cut_depth} (top-{self.depth} unless the top-{self.k} documents "
                     f"among them outscore every chunk left out)")
        lines = [f"query: {self.query!r}",
                 f"1. retrieve: {first}" + ("" if len(self.first_stage) == 1 else " -> union"),
                 f"2. re-score every candidate with: {', '.join(self.signals)}"]
        if len(self.signals) == 1:
            lines.append(f"3. rank by {self.signals[0]}")
        elif self.fusion == "rrf":
            lines.append(f"3. fuse: reciprocal rank fusion, k={self.rrf_k}")
        else:
            w = ", ".join(f"{s}={self.weights[s]:g}" for s in self.signals)
            lines.append(f"3. fuse: weighted sum ({w}), normalisation={self.normalize}")
            if self.low_coverage:
                t, low = self.low_coverage
                lines.append(f"   (if the collection holds under {t:.0%} of the query's BM25 terms: "
                             + ", ".join(f"{s}={low[s]:g}" for s in self.signals) + ")")
        if self.doc_score == "maxp":
            lines.append(f"4. group passages by document (best passage wins), return top-{self.k}")
        elif self.doc_score == "whole":
            lines.append("4. the same over whole documents (the long-context view; a document past the target "
                         f"length scores as its best part), return top-{self.k}, each with its best passage")
        else:
            lines.append(f"4. steps 1-3 over passages (best passage per document) and over whole documents; fuse "
                         f"the two document scores: min-max each, weights passage={1 - self.whole_weight:g}, "
                         f"whole={self.whole_weight:g}; return top-{self.k}")

        if self.where:
            lines.insert(1, "0. filter: " + " and ".join(f"{f}{o}{v}" for f, o, v in self.where))
        return "\n".join(lines)


def parse_mode(mode: str) -> tuple[str, ...]:
    """'dense+sparse' -> ('dense', 'sparse'); 'all' -> dense+sparse+colbert."""
    if not isinstance(mode, str) or not mode.strip():
        raise InputError("empty mode; choose from dense, sparse, colbert, bm25 joined by '+', or 'all'")
    return _parse_mode(mode)


@lru_cache(maxsize=256)  # a handful of modes, parsed again for every query otherwise
def _parse_mode(mode: str) -> tuple[str, ...]:
    parts = [p.strip().lower() for p in mode.split("+")]
    out = []
    for p in parts:
        if p == "all":
            out += ["dense", "sparse", "colbert"]
        elif p in SIGNALS:
            out.append(p)
        else:
            raise InputError(f"unknown mode {p!r}; choose from {', '.join(SIGNALS)} joined by '+', or 'all'")
    return tuple(s for s in SIGNALS if s in out)  # canonical order, duplicates removed


def default_mode(colbert: bool = True, bm25: bool = True) -> str:
    """DEFAULT_MODE less the signals a collection lacks (built without multi-vectors or without BM25)."""
    drop = {s for s, have in (("colbert", colbert), ("bm25", bm25)) if not have}
    return "+".join(s for s in parse_mode(DEFAULT_MODE) if s not in drop)


def parse_weights(text: str | None, signals, defaults: dict | None = None) -> dict[str, float]:
    """'dense=0.4,sparse=0.2' (or '0.4,0.2' in mode order) -> weights; unspecified ones take `defaults`
    (a model's own, see `check_weights`), then DEFAULT_WEIGHTS."""
    weights = {**DEFAULT_WEIGHTS, **(defaults or {})}
    if not text:
        return weights
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        if all("=" in x for x in items):
            for x in items:
                name, value = x.split("=", 1)
                if name.strip() not in SIGNALS:
                    raise InputError(f"unknown signal {name!r} in --weights; choose from {', '.join(SIGNALS)}")
                weights[name.strip()] = float(value)
        elif len(items) == len(signals):
            weights.update({s: float(v) for s, v in zip(signals, items)})
        else:
            raise InputError(f"--weights needs name=value pairs or {len(signals)} numbers (one per signal of the mode)")
    except ValueError:
        raise InputError(f"--weights {text!r}: weights must be numbers, e.g. dense=0.4,sparse=0.2") from None
    if any(w < 0 for w in weights.values()):
        raise InputError("--weights must not be negative")
    return weights


_WHERE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|~|<|>)\s*(.*?)\s*$")


def parse_where(items) -> tuple:
    """['lang=de', 'path~docs/*', 'year>=2020'] -> (('lang', '=', 'de'), ...)."""
    out = []
    for item in items or ():
        m = _WHERE.match(item)
        if not m:
            raise InputError(f"bad --where {item!r}; use FIELD=VALUE, FIELD!=VALUE, FIELD>NUMBER or path~GLOB")
        out.append(m.groups())
    return tuple(out)


def parse_low_coverage(value, signals, weights_given: bool, recorded: dict | None, fusion: str, normalize: str) -> tuple:
    """The plan's `low_coverage`: `value` False or "off": none; "0.5:colbert=1" (or (0.5, {"colbert": 1})):
    that threshold and those weights (signals left out weigh 0); None: the model's own (fusion.json
    "weights_minmax_low_coverage", below "low_coverage_below"), for min-max fusion with the model's weights only.
    Coverage is read from BM25's terms, so it needs bm25 in the mode; a one-signal mode ignores it, as it does
    weights."""
    if value is False or value == "off" or len(signals) == 1:  # one signal: no weights to choose
        return ()
    if value is None:
        recorded = recorded or {}
        if weights_given or fusion != "weighted" or normalize != "minmax" or "minmax_low_coverage" not in recorded:
            return ()
        t, low = recorded.get("low_coverage_below"), recorded["minmax_low_coverage"]
        if "bm25" not in signals or not any(low.get(s, 0) > 0 for s in signals):
            return ()
    else:
        if isinstance(value, str):
            head, sep, rest = value.partition(":")
            if not sep:
                raise InputError(f"--low-coverage {value!r}: give THRESHOLD:WEIGHTS, e.g. 0.5:colbert=1, or 'off'")
            try:
                t = float(head)
            except ValueError:
                raise InputError(f"--low-coverage {value!r}: the threshold must be a number, e.g. 0.5") from None
            low = parse_weights(rest, signals, {s: 0.0 for s in SIGNALS})
        else:
            t, low = value
        if "bm25" not in signals:
            raise InputError("--low-coverage reads the query's coverage from BM25; add bm25 to the mode")
        if not any(low.get(s, 0) > 0 for s in signals):
            raise InputError("--low-coverage weights give every signal of the mode 0; give one a positive weight")
    if not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise InputError(f"low-coverage threshold must be in (0, 1], got {t!r}")
    return float(t), {s: float(low.get(s, 0.0)) for s in signals}


def model_weights(recorded: dict | None, fusion: str = "weighted", normalize: str = "none",
                  long_documents=False) -> dict | None:
    """The part of a model's fusion weights (its fusion.json as a collection records it: signal entries for raw
    weighted sums, a "minmax" entry for min-max fusion, a "minmax_long" one for min-max fusion over long
    documents) that applies to this fusion; None where none does. long_documents: a bool, or a function giving
    it (called only where it decides)."""
    recorded = recorded or {}
    if fusion == "weighted" and normalize == "minmax":
        long = recorded.get("minmax_long")
        if long and (long_documents() if callable(long_documents) else long_documents):
            return long
        return recorded.get("minmax")
    if fusion == "weighted" and normalize == "none":
        return {s: w for s, w in recorded.items() if s in SIGNALS}
    return None


def make_plan(query: str, mode: str = DEFAULT_MODE, k: int = 10, depth: int = 100, fusion: str = "weighted",
              weights: str | dict | None = None, normalize: str | None = None, rrf_k: int = 60,
              where=(), colbert_depth: int = 200, doc_score: str | None = None, whole_weight: float = 0.5,
              default_weights: dict | None = None, ef_search: int | None = None,
              long_documents=False, low_coverage=None) -> Plan:
    """default_weights: the weights a model's heads were tuned for (`Collection.plan` passes the ones its
    collection was built with); what `weights` leaves out comes from them, then from DEFAULT_WEIGHTS.
    Its signal entries apply to raw weighted sums (they correct the scale of the heads' raw scores); its
    "minmax" entry, where the model has one, to min-max fusion ("minmax_long" instead when `long_documents`:
    `Collection.long_documents`; or a function giving it). DBSF and RRF keep the planner's defaults. low_coverage: `parse_low_coverage`."""
    if not isinstance(query, str) or not query.strip():
        raise InputError("empty query; give the text to search for")
    if isinstance(mode, str) and "@" in mode:  # "dense+bm25@both": the document score inside the mode
        mode, doc_score = (x.strip() for x in mode.rsplit("@", 1))
    signals = parse_mode(mode)
    doc_score = doc_score or "maxp"
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if depth < 1:
        raise InputError(f"depth must be at least 1, got {depth}")
    if ef_search is not None and not 1 <= int(ef_search) <= 100_000:
        raise InputError(f"ef_search must be between 1 and 100000, got {ef_search}")
    if doc_score not in DOC_SCORES:
        raise InputError(f"unknown document score {doc_score!r}; choose from {', '.join(DOC_SCORES)}")
    if not 0 <= whole_weight <= 1:
        raise InputError(f"whole_weight must be between 0 and 1, got {whole_weight}")
    if normalize is None:
        normalize = "minmax" if "bm25" in signals and len(signals) > 1 else "none"
    if normalize not in NORMALIZERS:
        raise InputError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALIZERS)}")
    low = parse_low_coverage(low_coverage, signals, weights is not None, default_weights, fusion, normalize)
    default_weights = model_weights(default_weights, fusion, normalize, long_documents)
    w = weights if isinstance(weights, dict) else parse_weights(weights, signals, default_weights)
    w = {**DEFAULT_WEIGHTS, **(default_weights or {}), **w}
    first = tuple(s for s in signals if s in FIRST_STAGE)
    if not first:  # colbert alone re-ranks the dense top-N (BGE-M3 protocol)
        first, depth = ("dense",), max(depth, colbert_depth)
    depth = max(depth, k)
    return Plan(query=query, signals=signals, first_stage=first, depth=depth, k=k, fusion=fusion,
                normalize=normalize, weights={s: w[s] for s in signals}, rrf_k=rrf_k,
                where=tuple(where) if not isinstance(where, tuple) else where, doc_score=doc_score,
                whole_weight=float(whole_weight), ef_search=None if ef_search is None else int(ef_search),
                low_coverage=low)
