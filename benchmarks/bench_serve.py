"""Load test of `hsearch serve` on 127.0.0.1: query clients while one client writes over HTTP and an
`hsearch index` run commits into the same collection.

    python benchmarks/bench_serve.py --dataset ../shared/datasets/scifact --collection benchmarks/out/scifact-e5 \
        --clients 16 --seconds 60 --out benchmarks/out/serve.md
    python benchmarks/bench_serve.py --quick   # tiny random model and synthetic corpus built in the run, 4 clients

--collection is built from the dataset's corpus.jsonl when it does not exist (`hsearch index`, once: SciFact
takes about half an hour on 2 cores) and reused after; the queries are the dataset's queries.jsonl.

What it does, against one server process it starts and stops itself:
  1. single client: one client queries for a quarter of --seconds (at least 1 s): the single-client rate;
  2. load: --clients clients query for --seconds while
     - a writer client loops over HTTP: upserts a new document and reads it back, replaces every third one
       and reads the new text back, deletes every second one and reads it back as gone;
     - at a quarter of --seconds, `hsearch index` (another process, as a user would run it) indexes
       --index-docs documents of the corpus under new ids `bench-index-ID` into the same collection. It and
       the server's writer thread take turns for the collection's write lock (hsearch/writer.py); if the run
       is still going at --seconds, the clients go on until it has committed, so it always commits under load;
  3. checks: every acknowledged write is there exactly as acknowledged: each kept document by GET (its latest
     text) and by a query, each deleted one gone from both, each indexed one by GET and by a query for its
     own title; the collection's live document and chunk counts equal the counts before plus what was
     acknowledged (an extra chunk is a duplicate), and equal the counts before once the bench's documents
     are deleted again at the end.
Reported: requests, failed requests (anything but HTTP 200, or a transport error), QPS, client-side p50/p95
latency (HTTP round trip, query encoding included), QPS under load over the single-client rate; writes
acknowledged, failed, their latency (a write waits while the index run holds the lock), lost, duplicated and
resurrected documents. Loopback only; every loop is bounded by time and count. Exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from harness.report import commit_header, machine  # noqa: E402
from server_process import hsearch_env, start_server, stop  # noqa: E402

KEY = "bench-key"
MAX_REQUESTS_PER_CLIENT = 1_000_000  # a bound besides time
MAX_UPSERTS = 1900  # at most ~950 kept: the final query (k <= 1000) can return every one
MAX_INDEX_DOCS = 1000
EXTRA_S = 600  # the most the load phase runs past --seconds waiting for the index run


def _percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def query_clients(url, name, queries, n_clients, stop: threading.Event, mode, k):
    """`n_clients` query loops until `stop` is set: (latencies in ms of the successes, failures, wall seconds)."""
    import httpx

    lat, failures, lock = [], [], threading.Lock()
    start = time.monotonic()

    def loop(i):
        rng = random.Random(i)
        mine, bad = [], []
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as c:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    break
                t = time.perf_counter()
                try:
                    r = c.post(f"/collections/{name}/query", json={"query": rng.choice(queries), "mode": mode, "k": k})
                    ok = r.status_code == 200
                    why = None if ok else f"{r.status_code}: {r.text[:200]}"
                except Exception as e:  # a transport error is a failed request too
                    ok, why = False, repr(e)
                if ok:
                    mine.append((time.perf_counter() - t) * 1000)
                else:
                    bad.append(why)
        with lock:
            lat.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, failures, time.monotonic() - start


def writer_client(url, name, stop: threading.Event, w: dict):
    """Upsert, replace every third, delete every second; each write read back at once. Until `stop` is set.
    `w`: counts, failures, latencies, and what should be there at the end (texts, chunks) or gone (deleted)."""
    import httpx

    w.update(added=0, replaced=0, deleted_n=0, failed=[], not_visible=[], latency=[], texts={}, chunks={},
             deleted=set())

    def write(c, method, path, body, field, want):
        t = time.perf_counter()
        try:
            r = c.request(method, f"/collections/{name}{path}", json=body)
        except Exception as e:
            w["failed"].append(f"{method} {e!r}")
            return None
        w["latency"].append((time.perf_counter() - t) * 1000)
        if r.status_code != 200 or r.json().get(field) != want:
            w["failed"].append(f"{method} {r.status_code}: {r.text[:200]}")
            return None
        return r.json()

    def read_back(c, doc_id, text):  # `text` None: the document should be gone
        r = c.get(f"/collections/{name}/documents/{doc_id}")
        seen = r.json().get("text") if r.status_code == 200 else None
        if seen != text or r.status_code != (404 if text is None else 200):
            w["not_visible"].append(f"{doc_id}: {r.status_code} {seen!r}")

    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}, timeout=EXTRA_S) as c:
        for i in range(MAX_UPSERTS):
            if stop.is_set():
                break
            doc_id = f"bench-serve-{i}"
            for version, field in ((f"Load test note number {i} about alpine ferns and moss.", "added"),
                                   (f"Load test note number {i}, revised, about alpine ferns and moss.", "updated")):
                if field == "updated" and i % 3 != 1:
                    break
                done = write(c, "PUT", "/documents", [{"id": doc_id, "text": version}], field, 1)
                if done is None:
                    break
                w["added" if field == "added" else "replaced"] += 1
                w["texts"][doc_id], w["chunks"][doc_id] = version, done["chunks"]
                read_back(c, doc_id, version)
            if i % 2 == 1 and doc_id in w["texts"]:
                if write(c, "DELETE", "/documents", {"ids": [doc_id]}, "deleted", 1) is not None:
                    w["deleted_n"] += 1
                    del w["texts"][doc_id], w["chunks"][doc_id]
                    w["deleted"].add(doc_id)
                    read_back(c, doc_id, None)


def index_documents(corpus: Path, n: int, out: Path) -> list[dict]:
    """The first `n` documents of a BEIR corpus.jsonl under new ids (`bench-index-ID`), written to `out`."""
    docs = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip() and len(docs) < n:
                d = json.loads(line)
                docs.append({"_id": f"bench-index-{d['_id']}", "title": d.get("title") or "", "text": d["text"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return docs


def hsearch_cli(*args) -> list[str]:
    """The command line of `hsearch ARGS` run from this checkout (as tests/server_process.py starts the server)."""
    return [sys.executable, "-m", "hsearch.cli", *map(str, args)]


def build_collection(dataset: Path, folder: Path, model: str):
    print(f"building {folder} from {dataset / 'corpus.jsonl'} (once; reused by later runs)", file=sys.stderr)
    subprocess.run(hsearch_cli("index", dataset / "corpus.jsonl", "-c", folder, "--model", model, "-q"),
                   check=True, cwd=ROOT, env=hsearch_env(), stdout=sys.stderr)


def quick_setup(work: Path):
    """A tiny random BGE-M3-format model and a collection of synthetic documents (no download)."""
    os.environ.setdefault("HSEARCH_RUNTIME", "torch")
    os.environ.setdefault("HSEARCH_PRECISION", "fp32")
    from harness.synthetic import make_corpus, make_queries
    from tiny_model import build_tiny_bgem3

    from hsearch.engine import open_collection

    model = build_tiny_bgem3(work / "model")
    texts, vocab, word, offsets, counts = make_corpus(100, vocab_size=2000, words=(10, 40), topics=10)
    corpus = work / "synthetic" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": f"topic note {i}", "text": t}) + "\n"
                              for i, t in enumerate(texts)))
    col = open_collection(work / "col", create=True, model=str(model))
    col.index(corpus)
    return work / "col", corpus, make_queries(50, vocab, word, offsets, counts)


def check(url, name, w: dict, indexed: list[dict], before: dict) -> dict:
    """What went missing, came twice or came back; the counts at the end; the bench's documents deleted again."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}, timeout=120) as c:
        def query(text, where, k):
            r = c.post(f"/collections/{name}/query", json={"query": text, "mode": "bm25", "k": k, "where": where,
                                                           "depth": 10_000})
            return [h["id"] for h in r.json()["hits"]] if r.status_code == 200 else None

        def text_of(doc_id):
            r = c.get(f"/collections/{name}/documents/{doc_id}")
            return r.json()["text"] if r.status_code == 200 else None

        found = query("alpine ferns moss", ["id~bench-serve-*"], 1000) or []
        out["lost"] = sorted(d for d, t in w["texts"].items() if d not in found or text_of(d) != t)
        out["duplicated"] = sorted({d for d in found if found.count(d) > 1})
        out["resurrected"] = sorted(d for d in w["deleted"] if d in found or text_of(d) is not None)
        out["index lost"] = sorted(d["_id"] for d in indexed if text_of(d["_id"]) is None or
                                   query(f"{d['title']} {d['text']}"[:2000], [f"id={d['_id']}"], 1) != [d["_id"]])
        out["at end"] = counts(c, name)
        ids = sorted(set(found) | set(w["texts"]) | {d["_id"] for d in indexed})
        for i in range(0, len(ids), 1000):  # leave the collection as it was
            c.request("DELETE", f"/collections/{name}/documents", json={"ids": ids[i:i + 1000]})
        out["after cleanup"] = counts(c, name)
    return out


def counts(c, name) -> dict:
    info = c.get(f"/collections/{name}").json()
    return {"documents": info["documents"], "chunks": info["chunks"]}


def cli_walls(folder: Path, queries: list[str], args) -> tuple[list[float], list[str]]:
    """Wall seconds of `hsearch query` (a new process each time, found the server through its server.json)
    per query, and what went wrong: a failed run, or one answered in its own process instead."""
    walls, wrong = [], []
    env = {**hsearch_env(), "HSEARCH_API_KEY": KEY}
    for q in queries:
        t = time.perf_counter()
        out = subprocess.run(hsearch_cli("query", q, "-c", folder, "--mode", args.mode, "-k", str(args.k), "--explain"),
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        walls.append(time.perf_counter() - t)
        if out.returncode != 0 or "answered by the server" not in out.stdout:
            wrong.append(f"exit {out.returncode}: {(out.stderr or out.stdout)[-300:]}")
    return walls, wrong


def measure(url, name, queries, folder, work, indexed, args) -> dict:
    """The three phases against the running server (see the module docstring); everything `render` reports."""
    import httpx

    m = {}
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEY}"}) as c:
        m["before"] = counts(c, name)
    done = threading.Event()
    threading.Timer(max(1.0, args.seconds / 4), done.set).start()
    m["single"] = query_clients(url, name, queries, 1, done, args.mode, args.k)
    m["cli"] = cli_walls(folder, queries[:args.cli_runs], args)

    stop_load, w = threading.Event(), {}
    m["w"] = w

    def run_clients():
        m["load"] = query_clients(url, name, queries, args.clients, stop_load, args.mode, args.k)

    threads = [threading.Thread(target=writer_client, args=(url, name, stop_load, w)),
               threading.Thread(target=run_clients)]
    start = time.monotonic()
    try:
        for t in threads:
            t.start()
        time.sleep(args.seconds / 4)
        m["index start"] = time.monotonic() - start
        try:
            m["run"] = subprocess.run(hsearch_cli("index", work / "index-run" / "corpus.jsonl", "-c", folder, "-q"),
                                      capture_output=True, text=True, cwd=ROOT, env=hsearch_env(),
                                      timeout=args.seconds + EXTRA_S)
        except subprocess.TimeoutExpired as e:
            m["run"] = subprocess.CompletedProcess(e.cmd, "timeout", "", f"killed after {e.timeout:.0f} s")
        m["index end"] = time.monotonic() - start
        time.sleep(max(0.0, args.seconds - m["index end"]))
    finally:
        stop_load.set()  # also on an error above: the client threads end instead of running on
        for t in threads:
            t.join()
    m["checked"] = check(url, name, w, indexed, m["before"])
    return m


def render(m: dict, args, argv, folder, queries, indexed) -> tuple[str, bool]:
    """The markdown report, and whether anything failed."""
    before, w, checked, run = m["before"], m["w"], m["checked"], m["run"]
    lat1, fail1, wall1 = m["single"]
    lat, fail, wall = m["load"]
    cli, cli_wrong = m["cli"]
    chunks = re.search(r"(\d+) chunks encoded", run.stdout)
    index_chunks = int(chunks.group(1)) if chunks else 0
    acknowledged = len(indexed) if run.returncode == 0 else 0  # an index run acknowledges by exiting with 0
    expected = {"documents": before["documents"] + len(w["texts"]) + acknowledged,
                "chunks": before["chunks"] + sum(w["chunks"].values()) + index_chunks}
    qps1, qps = len(lat1) / wall1, len(lat) / wall
    cmd = "python benchmarks/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    wl = w["latency"]
    lines = [
        "### hsearch serve under load (benchmarks/bench_serve.py)",
        commit_header(),
        "",
        f"`{cmd}`; {machine()}. Collection `{folder.name}`: {before['documents']} documents, {before['chunks']} "
        f"chunks; mode {args.mode}, k={args.k}; {len(queries)} distinct queries; latency is the client's HTTP "
        "round trip (query encoding included).",
        "",
        "| clients | seconds | requests | failed | QPS | p50 ms | p95 ms | QPS / single-client QPS |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | {wall1:.1f} | {len(lat1) + len(fail1)} | {len(fail1)} | {qps1:.1f} | {_percentile(lat1, .5):.1f} | "
        f"{_percentile(lat1, .95):.1f} | 1.00 |",
        f"| {args.clients} (+1 writer, +1 index run) | {wall:.1f} | {len(lat) + len(fail)} | {len(fail)} | {qps:.1f} | "
        f"{_percentile(lat, .5):.1f} | {_percentile(lat, .95):.1f} | {qps / qps1 if qps1 else float('nan'):.2f} |",
        "",
        f"`hsearch query` from the shell through the running server (a new process each time, {len(cli)} "
        f"queries, --explain): median **{statistics.median(cli) if cli else float('nan'):.2f} s** wall "
        f"(min {min(cli, default=float('nan')):.2f}, max {max(cli, default=float('nan')):.2f}).",
        "",
        "| writes | acknowledged | failed | p50 ms | max ms | not visible at once | lost | duplicated | resurrected |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| HTTP upserts (new / replacing) and deletes | {w['added']} / {w['replaced']} / {w['deleted_n']} | "
        f"{len(w['failed'])} | {_percentile(wl, .5):.1f} | {max(wl, default=float('nan')):.1f} | "
        f"{len(w['not_visible'])} | {len(checked['lost'])} | {len(checked['duplicated'])} | "
        f"{len(checked['resurrected'])} |",
        f"| `hsearch index` run, {len(indexed)} documents, {index_chunks} chunks, {m['index start']:.1f}-"
        f"{m['index end']:.1f} s into the load | {acknowledged} | {int(run.returncode != 0)} | | "
        f"{(m['index end'] - m['index start']) * 1000:.0f} | | {len(checked['index lost'])} | | |",
        "",
        "| live in the collection | before | at the end | expected at the end | after deleting the bench's |",
        "|---|---|---|---|---|",
        *(f"| {what} | {before[what]} | {checked['at end'][what]} | {expected[what]} | "
          f"{checked['after cleanup'][what]} |" for what in ("documents", "chunks")),
    ]
    problems = [("failed queries", fail + fail1), ("CLI queries not answered by the server", cli_wrong), ("failed writes", w["failed"]),
                ("not visible at once", w["not_visible"]),
                *((k, checked[k]) for k in ("lost", "duplicated", "resurrected", "index lost")),
                ("index run", [f"exit {run.returncode}: {run.stderr[-500:]}"] if run.returncode else []),
                # more live chunks than acknowledged: duplicates; fewer: lost
                ("counts", [f"{k}: {checked['at end'][k]} at the end, {expected[k]} expected; "
                            f"{checked['after cleanup'][k]} after the cleanup, {before[k]} before"
                            for k in ("documents", "chunks") if checked["at end"][k] != expected[k]
                            or checked["after cleanup"][k] != before[k]])]
    for what, items in problems:
        if items:
            lines.append(f"\n{what} ({len(items)}, first 5): " + "; ".join(map(str, items[:5])))
    return "\n".join(lines) + "\n", any(items for _, items in problems)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", help="A BEIR folder (corpus.jsonl, queries.jsonl): the queries, the documents the "
                   "index run adds, and the collection's corpus when --collection does not exist yet.")
    p.add_argument("--collection", help="The collection folder to serve (built from --dataset when missing).")
    p.add_argument("--model", default="e5-small", help="Model when the collection is built here.")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--index-docs", type=int, default=100, help=f"Documents the `hsearch index` run adds "
                   f"(at most {MAX_INDEX_DOCS}).")
    p.add_argument("--mode", default="dense+sparse")
    p.add_argument("--cli-runs", type=int, default=5, help="`hsearch query` processes timed against the server.")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="Tiny model and synthetic corpus built in the run, "
                   "4 clients, 2 s, 20 documents indexed.")
    p.add_argument("--work", help="Folder for --quick's model and collection and the index run's corpus "
                   "(default: a temporary one).")
    p.add_argument("--out", help="Also write the report (markdown) here.")
    args = p.parse_args(argv)
    if not 1 <= args.index_docs <= MAX_INDEX_DOCS:
        p.error(f"--index-docs: 1 to {MAX_INDEX_DOCS}")
    from hsearch.server.client import collection_name

    tmp = tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name)
    if args.quick:
        args.clients, args.seconds, args.index_docs = min(args.clients, 4), min(args.seconds, 2.0), min(args.index_docs, 20)
        args.cli_runs = min(args.cli_runs, 2)
        folder, corpus, queries = quick_setup(work)
    elif not (args.dataset and args.collection):
        p.error("give --dataset DIR and --collection DIR (or --quick)")
    else:
        dataset, folder, corpus = Path(args.dataset), Path(args.collection), Path(args.dataset) / "corpus.jsonl"
        queries = [json.loads(line)["text"] for line in open(dataset / "queries.jsonl", encoding="utf-8")
                   if line.strip()]
        if not (folder / "manifest.json").exists():
            build_collection(dataset, folder, args.model)
    indexed = index_documents(corpus, args.index_docs, work / "index-run" / "corpus.jsonl")
    proc, url = start_server([folder], "--api-key", KEY)
    try:
        m = measure(url, collection_name(folder), queries, folder, work, indexed, args)
    finally:
        stop(proc)
        tmp.cleanup()
    report, failed = render(m, args, argv, folder, queries, indexed)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
