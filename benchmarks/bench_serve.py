"""Load test of `hsearch serve` on 127.0.0.1: concurrent query clients while one client upserts and deletes.

    python benchmarks/bench_serve.py --collection ./scifact-col --queries ../shared/datasets/scifact/queries.jsonl \
        --clients 16 --seconds 60 --out serve.md
    python benchmarks/bench_serve.py --quick        # tiny random model built in the run, 4 clients, 2 s

What it does, in order, against one server process it starts and stops itself:
  1. single client: one client queries for a quarter of --seconds (at least 1 s): the single-client rate;
  2. load: --clients clients query for --seconds while a writer client, in a loop, upserts a new document,
     reads it back, and deletes every second one, reading that back as gone;
  3. checks: every acknowledged upsert that was not deleted is findable exactly once (GET and a query), every
     acknowledged delete is gone.
Reported: requests, failed requests (anything but HTTP 200, or a transport error), QPS, client-side p50/p95
latency (HTTP round trip, query encoding included), QPS under load over the single-client rate; acknowledged
writes, lost, duplicated and resurrected documents. The writer's documents use ids `bench-serve-N`, removed at
the end. Loopback only; every loop is bounded by time and count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
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
from harness.report import commit_header  # noqa: E402

MAX_REQUESTS_PER_CLIENT = 1_000_000  # a bound besides time
MAX_WRITES = 100_000


def _percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def query_clients(url, name, queries, n_clients, seconds, mode, k, headers):
    """Run `n_clients` query loops for `seconds`: (latencies in ms of the successes, failures, wall seconds)."""
    import httpx

    lat, failures, lock = [], [], threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds

    def loop(i):
        rng = random.Random(i)
        mine, bad = [], []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= stop_at:
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
        t.join(seconds + 120)
    return lat, failures, time.monotonic() - start


def writer_client(url, name, headers, stop: threading.Event, out: dict):
    """Upsert, read back, delete every second one, read back as gone; until `stop` is set."""
    import httpx

    out.update(upserts=0, deletes=0, failed=[], kept=set(), deleted=set(), not_visible=[])
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        for i in range(MAX_WRITES):
            if stop.is_set():
                break
            doc_id = f"bench-serve-{i}"
            try:
                r = c.put(f"/collections/{name}/documents",
                          json=[{"id": doc_id, "text": f"Load test note number {i} about alpine ferns and moss."}])
                if r.status_code != 200:
                    out["failed"].append(f"upsert {r.status_code}: {r.text[:200]}")
                    continue
                out["upserts"] += 1
                out["kept"].add(doc_id)
                if c.get(f"/collections/{name}/documents/{doc_id}").status_code != 200:
                    out["not_visible"].append(doc_id)
                if i % 2:
                    r = c.request("DELETE", f"/collections/{name}/documents", json={"ids": [doc_id]})
                    if r.status_code != 200:
                        out["failed"].append(f"delete {r.status_code}: {r.text[:200]}")
                        continue
                    out["deletes"] += 1
                    out["kept"].discard(doc_id)
                    out["deleted"].add(doc_id)
                    if c.get(f"/collections/{name}/documents/{doc_id}").status_code != 404:
                        out["not_visible"].append(f"{doc_id} (deleted)")
            except Exception as e:
                out["failed"].append(repr(e))


def check_writes(url, name, headers, w: dict) -> dict:
    """Lost: kept but not found; duplicated: found more than once; resurrected: deleted but found."""
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        r = c.post(f"/collections/{name}/query", json={"query": "alpine ferns moss", "mode": "bm25", "k": 1000,
                                                       "where": ["id~bench-serve-*"], "depth": 10_000})
        ids = [h["id"] for h in r.json()["hits"]]
        missing_get = [d for d in w["kept"] if c.get(f"/collections/{name}/documents/{d}").status_code != 200]
        back_get = [d for d in w["deleted"] if c.get(f"/collections/{name}/documents/{d}").status_code != 404]
        if ids or w["kept"]:  # leave the collection as it was
            c.request("DELETE", f"/collections/{name}/documents", json={"ids": sorted(set(ids) | w["kept"])[:1000]})
    lost = sorted(set(w["kept"] - set(ids)) | set(missing_get))
    return {"lost": lost, "duplicated": sorted({d for d in ids if ids.count(d) > 1}),
            "resurrected": sorted((set(ids) & w["deleted"]) | set(back_get))}


def quick_setup(work: Path):
    """A tiny random BGE-M3-format model and a collection of generated documents (no download)."""
    os.environ.setdefault("HSEARCH_RUNTIME", "torch")
    os.environ.setdefault("HSEARCH_PRECISION", "fp32")
    from tiny_model import build_tiny_bgem3

    from hsearch.engine import open_collection

    model = build_tiny_bgem3(work / "model")
    rng = random.Random(0)
    words = "dog cat park river city France Berlin qubits search index vector query ferns moss sleep".split()
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))} for i in range(60)]
    col = open_collection(work / "col", create=True, model=str(model))
    col.add(docs)
    queries = [" ".join(rng.choice(words) for _ in range(3)) for _ in range(50)]
    return work / "col", queries


def load_queries(path: str | None) -> list[str]:
    if path:
        return [json.loads(line)["text"] for line in open(path) if line.strip()][:5000]
    return ["search", "document", "what is this about", "how does it work"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--collection", help="A collection folder (required unless --quick).")
    p.add_argument("--queries", help="A queries.jsonl ({\"text\": ...} per line); default: a few generic queries.")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--mode", default="dense+sparse")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="Tiny model built in the run, 4 clients, 2 s.")
    p.add_argument("--work", help="Folder for --quick's model and collection (default: a temporary one).")
    p.add_argument("--out", help="Also write the report (markdown) here.")
    args = p.parse_args(argv)
    from server_process import start_server, stop

    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        args.clients, args.seconds = min(args.clients, 4), min(args.seconds, 2.0)
        folder, queries = quick_setup(Path(args.work or tmp.name))
    elif not args.collection:
        p.error("give --collection DIR (or --quick)")
    else:
        folder, queries = Path(args.collection), load_queries(args.queries)
    key = "bench-key"
    headers = {"authorization": f"Bearer {key}"}
    from hsearch.server.client import collection_name

    name = collection_name(folder)
    proc, url = start_server([folder], "--api-key", key)
    try:
        single_s = max(1.0, args.seconds / 4)
        lat1, fail1, wall1 = query_clients(url, name, queries, 1, single_s, args.mode, args.k, headers)
        stop_writes, w = threading.Event(), {}
        writer = threading.Thread(target=writer_client, args=(url, name, headers, stop_writes, w))
        writer.start()
        lat, fail, wall = query_clients(url, name, queries, args.clients, args.seconds, args.mode, args.k, headers)
        stop_writes.set()
        writer.join(300)
        checked = check_writes(url, name, headers, w)
    finally:
        stop(proc)
        tmp.cleanup()
    qps1, qps = len(lat1) / wall1, len(lat) / wall
    cmd = "python benchmarks/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "### hsearch serve under load (benchmarks/bench_serve.py)",
        commit_header(),
        f"`{cmd}`; {platform.processor() or platform.machine()}, nproc={os.cpu_count()}; "
        f"mode {args.mode}, k={args.k}; {len(queries)} distinct queries; latency is the client's HTTP round trip.",
        "",
        "| clients | seconds | requests | failed | QPS | p50 ms | p95 ms | QPS / single-client QPS |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | {wall1:.1f} | {len(lat1) + len(fail1)} | {len(fail1)} | {qps1:.1f} | {_percentile(lat1, .5):.1f} | "
        f"{_percentile(lat1, .95):.1f} | 1.00 |",
        f"| {args.clients} (+1 writer) | {wall:.1f} | {len(lat) + len(fail)} | {len(fail)} | {qps:.1f} | "
        f"{_percentile(lat, .5):.1f} | {_percentile(lat, .95):.1f} | {qps / qps1 if qps1 else float('nan'):.2f} |",
        "",
        "| upserts acknowledged | deletes acknowledged | failed writes | not visible at once | lost | duplicated "
        "| resurrected |",
        "|---|---|---|---|---|---|---|",
        f"| {w['upserts']} | {w['deletes']} | {len(w['failed'])} | {len(w['not_visible'])} | {len(checked['lost'])} | "
        f"{len(checked['duplicated'])} | {len(checked['resurrected'])} |",
    ]
    for what, items in (("failed queries", fail + fail1), ("failed writes", w["failed"]),
                        ("not visible at once", w["not_visible"]), *checked.items()):
        if items:
            lines.append(f"\n{what} (first 5): " + "; ".join(map(str, items[:5])))
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    bad = fail or fail1 or w["failed"] or w["not_visible"] or any(checked.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
