"""One comparison of hsearch with its peers on one collection (bench_engine.py's measurement): hsearch's
modes through the engine, its bare store calls, each peer built on the same vectors, the agreement of
every row with its reference, and the report's tables."""
from __future__ import annotations

import datetime
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from engine_peers import Corpus, QuerySet, available, make_peer
from harness.report import commit_header, fmt_mib, fmt_ms, fmt_s, load_str, machine, package_versions
from harness.timing import docs_of, overlap, time_queries

VERSIONED = ("faiss-cpu", "tantivy", "torch", "numpy", "bm25s", "qdrant-edge-py", "pymilvus", "milvus-lite")
ALL_PEERS = ("faiss-flat", "faiss-hnsw", "tantivy", "bm25s", "qdrant-edge", "milvus-lite")
# (label, mode, plan options): every hsearch configuration that is timed. The default plan retrieves
# top-depth (100) per first stage even for one signal and re-scores it; "(depth 10)" asks for the top-10
# only: the same work as a peer's top-10 search.
HSEARCH_MODES = [
    ("dense", "dense", {}), ("dense (depth 10)", "dense", {"depth": 10}),
    ("sparse", "sparse", {}), ("sparse (depth 10)", "sparse", {"depth": 10}),
    ("bm25", "bm25", {}), ("bm25 (depth 10)", "bm25", {"depth": 10}),
    ("colbert", "colbert", {}),
    ("dense+sparse", "dense+sparse", {}), ("dense+sparse (rrf)", "dense+sparse", {"fusion": "rrf"}),
    ("dense+bm25", "dense+bm25", {}), ("dense+sparse+bm25", "dense+sparse+bm25", {}), ("all", "all", {}),
    ("all+bm25", "all+bm25", {}),
    # issue 20's rule for queries foreign to the collection, given explicitly (collections built before it record
    # none): one coverage check per query; for queries in the documents' language the weights stay as they are
    ("all+bm25 (low-coverage rule 0.5:colbert=1)", "all+bm25", {"low_coverage": "0.5:colbert=1"}),
]
# the hsearch rows each peer mode is compared with (ratio table); the first is the overlap reference
COMPARE = {"dense": ["dense (depth 10)", "dense"], "sparse": ["sparse (depth 10)", "sparse"],
           "bm25": ["bm25 (depth 10)", "bm25"], "colbert": ["colbert"],
           "dense+sparse": ["dense+sparse (rrf)", "dense+sparse"], "dense+sparse (dbsf)": ["dense+sparse"],
           "dense+sparse (weighted)": ["dense+sparse"], "all": ["all"]}


def compared(mode: str) -> list[str]:
    """The hsearch rows a peer's mode is compared with; a "+ text" mode (hits with their texts, as hsearch's
    come) with the same rows as the bare one."""
    mode = mode.removesuffix(" + text")
    return COMPARE.get(mode, [mode])


class Bench:
    def __init__(self, args, name: str):
        self.args, self.name = args, name
        self.load_start = os.getloadavg()
        self.versions = package_versions(VERSIONED)
        self.commit = commit_header()  # the code as it was when the run started
        self.index_rows = []  # (system, part, seconds | None, bytes | None, note)
        self.latency = []  # dict(system, mode, p50, p95, overlap, ref)
        self.recall = []  # (system, params, recall@10)
        self.extra = []  # markdown sections
        self.notes = []
        self.index_note = None  # typed by hand (--index-note): printed as a note, never as a table row
        self.results = {}  # (system, mode) -> list of doc-id lists
        self.dense_chunks = {}  # system -> top-k chunk ids of a bare dense search, per query (for recall)

    def log(self, msg):
        print(f"[{time.strftime('%H:%M:%S')}] {self.name}: {msg}", file=sys.stderr, flush=True)

    def run(self, col, corpus: Corpus, doc_of: dict, qs: QuerySet, encs: list, work: Path):
        a = self.args
        k, nq = a.k, len(qs.texts)
        from hsearch.query.execute import rescore, retrieve
        from hsearch.query.plan import parse_mode

        snap = col.snapshot()
        # ---- hsearch through the engine (excluding query encoding)
        for label, mode, opts in HSEARCH_MODES:
            if ("colbert" in parse_mode(mode) and corpus.cb_flat is None) or ("bm25" in parse_mode(mode)
                                                                            and snap.bm25 is None):
                continue
            self.log(f"hsearch {label}")
            o = {"depth": a.depth, **opts}
            fn = lambda i, m=mode, o=o: col.run(col.plan(qs.texts[i], m, k=k, **o), encoded=encs[i])
            p50, p95, res = time_queries(fn, nq, a.repeats)
            self.results[("hsearch", label)] = [[h.id for h in hits] for hits in res]
            self.latency.append(dict(system="hsearch", mode=label, p50=p50, p95=p95))
        # ---- bare store calls (no planner, no fusion, no SQLite), given what the engine's plans give them:
        # the snapshot's scope, whose mask of each store's ids is computed once per snapshot (a bare
        # `snap.live` recomputed it on every call, 100k ids at a time, which no query does)
        allow = snap.scope()
        calls = [("dense", lambda i: retrieve(snap, "dense", encs[i].dense, k, allow)),
                 ("sparse", lambda i: retrieve(snap, "sparse", encs[i].sparse, k, allow)),
                 ("bm25", lambda i: retrieve(snap, "bm25", qs.texts[i], k, allow))]
        if snap.bm25 is not None:  # the low-coverage rule's check alone, the query analysed afresh (in a plan,
            # BM25's search reuses that analysis, so this bounds what the rule adds to a query)
            calls.append(("bm25 coverage of the query (the low-coverage rule's check)",
                          lambda i: snap.bm25.coverage(qs.texts[i])))
        if corpus.cb_flat is not None:
            cands = [retrieve(snap, "dense", e.dense, 200, allow)[0] for e in encs]
            calls.append(("colbert re-score of the dense top-200",
                          lambda i: rescore(snap, "colbert", encs[i].colbert, cands[i])))
        for label, fn in calls:
            self.log(f"hsearch store call {label}")
            p50, p95, res = time_queries(fn, nq, a.repeats)
            self.latency.append(dict(system="hsearch store call", mode=label, p50=p50, p95=p95))
            if label in ("dense", "sparse", "bm25"):
                self.results[("hsearch store call", label)] = [docs_of(r[0], doc_of, k) for r in res]
            if label == "dense":
                self.dense_chunks["hsearch"] = [r[0] for r in res]

        # ---- peers
        wanted = [p.strip() for p in a.peers.split(",") if p.strip()] if a.peers != "all" else list(ALL_PEERS)
        wanted = [] if a.peers == "none" else wanted
        names, skipped = available(wanted)
        self.notes += [f"peer skipped: {s}" for s in skipped]
        for pname in names:
            peer = make_peer(pname, a.threads, colbert=corpus.cb_flat is not None and not a.no_qdrant_colbert)
            self.log(f"{pname}: build")
            try:
                seconds = peer.build(corpus, work / pname)
                size = peer.size()
                self.index_rows.append((pname, "everything it holds", seconds, size, peer.notes))
                peer.prepare(qs, k, a.depth)
                for mode in peer.modes:
                    self.log(f"{pname} {mode}")
                    p50, p95, res = time_queries(lambda i, m=mode: peer.search(m, i), nq, a.repeats)
                    self.results[(pname, mode)] = [docs_of(r, doc_of, k) for r in res]
                    if mode == "dense":
                        self.dense_chunks[pname] = res
                    self.latency.append(dict(system=pname, mode=mode, p50=p50, p95=p95))
            except Exception as e:  # noqa: BLE001 - a peer failing is reported, the run goes on
                self.notes.append(f"{pname} failed: {type(e).__name__}: {e}")
                self.log(f"{pname} FAILED: {e!r}")
            finally:
                try:
                    peer.close()
                except Exception:  # noqa: BLE001
                    pass
                shutil.rmtree(work / pname, ignore_errors=True)
        self._overlaps(col, corpus, doc_of, encs, k)

    def _overlaps(self, col, corpus, doc_of, encs, k):
        """Agreement of each row's top-k with a reference: exact flat search for dense (so: recall@10),
        tantivy alone for bm25, and otherwise hsearch's row for the same mode."""
        R = self.results
        if ("faiss-flat", "dense") in R:
            exact = R[("faiss-flat", "dense")]
        else:  # exact dense by brute force on the read-back vectors
            exact = [docs_of(corpus.ids[np.argsort(-(corpus.dense @ e.dense))[:k]], doc_of, k) for e in encs]

        def reference(system, mode):
            if mode == "dense":
                return None if system == "faiss-flat" else ("exact (flat)", exact)
            if mode == "bm25":
                if system != "tantivy" and ("tantivy", "bm25") in R:
                    return "tantivy alone", R[("tantivy", "bm25")]
                return None if system == "hsearch" else ("hsearch bm25", R.get(("hsearch", "bm25")))
            if system == "hsearch":
                return None  # hsearch's rows are the references of the other modes
            key = mode if system == "hsearch store call" else compared(mode)[0]
            return f"hsearch {key}", R.get(("hsearch", key))

        for row in self.latency:
            got = R.get((row["system"], row["mode"]))
            ref = reference(row["system"], row["mode"]) if got is not None else None
            if ref and ref[1] is not None:
                row["overlap"], row["ref"] = overlap(got, ref[1], k), ref[0]
        # recall of the bare top-k chunk searches against exact search, chunk by chunk
        truth = self.dense_chunks.get("faiss-flat") or [corpus.ids[np.argsort(-(corpus.dense @ e.dense))[:k]]
                                                        for e in encs]
        for system, label in [("hsearch", "hsearch's own FAISS index (store call, "
                               + ("HNSW)" if self._hnsw(col) else "flat)")),
                              ("faiss-hnsw", "faiss HNSW alone"), ("qdrant-edge", "qdrant-edge HNSW"),
                              ("milvus-lite", "milvus-lite HNSW")]:
            if system in self.dense_chunks:
                got = [list(map(int, x)) for x in self.dense_chunks[system]]
                self.recall.append((label, overlap(got, [list(map(int, t)) for t in truth], k)))

    @staticmethod
    def _hnsw(col) -> bool:
        return any(s.stores["dense"].meta["kind"] == "hnsw" for s in col.snapshot().segments)


def report(b: Bench, title: str, data_lines: list[str]) -> str:
    a = b.args
    L = [f"## {title}", "",
         f"{datetime.datetime.now():%Y-%m-%d %H:%M}; machine: {machine()}; threads={a.threads} "
         "(faiss OpenMP, torch, BLAS, qdrant search/indexing pools; Milvus Lite runs in-process, its faiss "
         "shares the OpenMP setting); nothing else was controlled: the machine is shared, load average "
         f"(1/5/15 min) {load_str(b.load_start)} at the start, {load_str(os.getloadavg())} at the end.",
         "", "    " + " ".join(shlex.quote(x) for x in [sys.executable.split("/")[-1]] + sys.argv), "",
         b.commit, "", f"Versions: {b.versions}.", ""]
    L += data_lines + [""]
    L += ["### Index time and size on disk", "",
          "Sizes are disk usage (allocated blocks, as `du`). hsearch phases are measured inside one build "
          "through the engine (the writer's store calls timed in place).", "",
          "| system | part | index time (s) | size (MiB) | notes |", "|---|---|---:|---:|---|"]
    L += [f"| {s} | {p} | {fmt_s(t)} | {fmt_mib(z)} | {n} |" for s, p, t, z, n in b.index_rows]
    if b.index_note:
        L += ["", f"Note (given with --index-note, not measured by this run): full `hsearch index` of this "
              f"collection, including encoding: {b.index_note}"]
    L += ["", f"### Query latency, excluding query encoding (k={a.k}, depth {a.depth}, threads={a.threads})", "",
          f"{b.nq} queries; one warm-up pass, then {a.repeats} timed passes; p50/p95 over queries per pass, "
          "median over passes. overlap@10: mean share of the reference's top-10 documents also in this row's "
          "top-10 (for dense the reference is exact flat search). hsearch returns documents (a document "
          "scores as its best chunk); peers and store calls return chunks, mapped to their documents "
          "(repeats dropped), so where documents have several chunks a peer's list can hold fewer than 10 "
          "documents and the overlap drops below 1 for that reason alone. Fusion differs between engines "
          "(hsearch: weighted sum of all signals re-scored on the union, or RRF over those scores; Qdrant: "
          "RRF or DBSF of the prefetch lists; Milvus: RRF or weighted sum of the two lists), so fused rows "
          "agree only partly by design.", "",
          "| system | mode | p50 (ms) | p95 (ms) | overlap@10 | reference |", "|---|---|---:|---:|---:|---|"]
    for r in b.latency:
        ov = f"{r['overlap']:.3f}" if "overlap" in r else ""
        L.append(f"| {r['system']} | {r['mode']} | {fmt_ms(r['p50'])} | {fmt_ms(r['p95'])} | {ov} | {r.get('ref', '')} |")
    hs = {r["mode"]: r for r in b.latency if r["system"] == "hsearch"}
    ratios = []
    for r in b.latency:
        if r["system"].startswith("hsearch"):
            continue
        for ref in compared(r["mode"]):
            if ref in hs:
                h = hs[ref]
                ratios.append(f"| {r['system']} {r['mode']} | hsearch {ref} | {fmt_ms(r['p50'])} | "
                              f"{fmt_ms(h['p50'])} | {r['p50'] / h['p50']:.2f}x |")
    if ratios:
        L += ["", "### Ratios (peer p50 / hsearch p50; above 1: hsearch is faster)", "",
              "| peer row | hsearch row | peer p50 (ms) | hsearch p50 (ms) | ratio |", "|---|---|---:|---:|---:|"]
        L += ratios
    if b.recall:
        L += ["", "### HNSW recall@10 against exact (flat) search, same query vectors", "",
              f"Top-{a.k} chunk ids of a bare dense search against those of exact inner-product search "
              "(faiss IndexFlatIP) on the same vectors.", "", "| index | recall@10 |", "|---|---:|"]
        L += [f"| {s} | {r:.3f} |" for s, r in b.recall]
    for section in b.extra:
        L += [""] + section
    if b.notes:
        L += ["", "Notes:"] + [f"- {n}" for n in b.notes]
    return "\n".join(L) + "\n"
