"""`hsearch index --ray` against the plain single-process run on the same corpus: wall time, and
whether the two collections are bit-identical (issue 7's acceptance check).

    python benchmarks/bench_ray.py ../shared/datasets/scifact/corpus.jsonl --work /tmp/ray-bench \\
        --out benchmarks/out/ray-scifact.md

Both collections are built by the real CLI in fresh processes (`hsearch index PATH -c DIR
--colbert-codec float32 -q`, the second one with `--ray`), one after the other, so neither competes
with the other for the CPUs. Compared afterwards: every file of every segment (FAISS index, sparse
inverted and forward index, token store, chunk-to-document rows) byte for byte, the `chunks` and
`docs` tables of docs.sqlite row for row, and the top-10 of a few queries in every mode. The
BM25 (tantivy) folder is not compared byte for byte: it holds random segment ids and no encoder output.
`--quick` indexes a small generated corpus with the tiny test model so the script cannot rot.
"""
from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from harness.report import commit_header

QUERIES = ["Do statins reduce the risk of dementia?", "vitamin D deficiency and bone fractures",
           "gene expression in cancer cells"]
MODES = ["dense", "sparse", "colbert", "bm25", "all"]


def build(corpus: str, folder: Path, ray: bool, model: str | None, extra: list[str]) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "hsearch.cli", "index", corpus, "-c", str(folder), "--colbert-codec", "float32",
           "-q", *extra]
    if model:
        cmd += ["--model", model]
    if ray:
        cmd += ["--ray"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def compare(a: Path, b: Path) -> dict:
    files = sorted(str(p.relative_to(a)) for p in (a / "segments").rglob("*") if p.is_file())
    other = sorted(str(p.relative_to(b)) for p in (b / "segments").rglob("*") if p.is_file())
    same, differ, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    size = sum((a / f).stat().st_size for f in files)
    tables = {}
    for table, order in (("chunks", "chunk_id"), ("docs", "row")):
        rows = []
        for folder in (a, b):
            with sqlite3.connect(folder / "docs.sqlite") as db:
                rows.append(db.execute(f"select * from {table} order by {order}").fetchall())
        tables[table] = {"rows": len(rows[0]), "equal": rows[0] == rows[1]}
    return {"files": len(files), "bytes": size, "same_file_list": files == other, "identical": len(same),
            "differ": differ, "errors": errors, "tables": tables}


def compare_hits(a: Path, b: Path, queries: list[str]) -> dict:
    from hsearch.engine import open_collection

    ca, cb = open_collection(a), open_collection(b)
    out = {}
    for mode in MODES:
        equal = 0
        for q in queries:
            ha, hb = (c.search(q, mode=mode, k=10) for c in (ca, cb))
            equal += [(h.id, h.score) for h in ha] == [(h.id, h.score) for h in hb]
        out[mode] = f"{equal}/{len(queries)}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?", help="a folder or BEIR corpus.jsonl")
    ap.add_argument("--work", default="/tmp/hsearch-ray-bench")
    ap.add_argument("--out", default=None, help="write the report (markdown) here")
    ap.add_argument("--model", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny generated corpus and tiny model (seconds)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    extra, queries = [], QUERIES
    if args.quick:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_model import build_tiny_bgem3  # the tests' own tiny BGE-M3-format checkpoint

        args.model = str(build_tiny_bgem3(work / "tiny-model"))
        corpus = work / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        corpus.mkdir()
        for i in range(30):
            (corpus / f"d{i}.txt").write_text(f"document {i} about dogs and parks " * (1 + i % 7))
        args.corpus, extra, queries = str(corpus), ["--chunk-tokens", "32", "--chunk-overlap", "4"], ["dogs"]
    if not args.corpus:
        ap.error("give a corpus, or --quick")
    times = {}
    for name, ray in (("plain", False), ("ray", True)):
        times[name] = build(args.corpus, work / name, ray, args.model, extra)
        print(f"{name}: {times[name]:.1f} s", flush=True)
    result = compare(work / "plain", work / "ray")
    result["hits"] = compare_hits(work / "plain", work / "ray", queries)
    identical = (result["same_file_list"] and not result["differ"] and not result["errors"]
                 and all(t["equal"] for t in result["tables"].values()))
    result.update(times=times, bit_identical=identical)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(report(args, result))
    sys.exit(0 if identical else 1)


def report(args, r: dict) -> str:
    t = r["times"]
    command = "--quick" if args.quick else args.corpus + (f" --model {args.model}" if args.model else "")
    lines = [f"Command: `python benchmarks/bench_ray.py {command} --work {args.work}`",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
             f"date {datetime.date.today().isoformat()}; one run each, one after the other.", "", commit_header(), "",
             "| run | wall | segment files | bytes | identical files | chunks rows equal | docs rows equal |",
             "|---|---|---|---|---|---|---|",
             f"| plain `hsearch index` | {t['plain']:.0f} s | {r['files']} | {r['bytes']:,} | reference | | |",
             f"| `hsearch index --ray` (local) | {t['ray']:.0f} s ({t['ray'] / t['plain']:.2f}x) | {r['files']} | "
             f"{r['bytes']:,} | {r['identical']}/{r['files']} | {r['tables']['chunks']['equal']} | "
             f"{r['tables']['docs']['equal']} |", "",
             "Same top-10 (ids and scores) per mode: "
             + ", ".join(f"{m} {v}" for m, v in r["hits"].items()) + ".",
             f"Bit-identical: **{r['bit_identical']}**."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
