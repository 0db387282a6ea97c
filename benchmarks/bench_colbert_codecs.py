"""What multi-vector compression costs in retrieval quality: nDCG@10 per codec against float32 MaxSim.

    hsearch index ../shared/datasets/scifact/corpus.jsonl -c benchmarks/out/scifact-e5-f32 --colbert-codec float32
    python benchmarks/bench_colbert_codecs.py --collection benchmarks/out/scifact-e5-f32 \\
        --dataset ../shared/datasets/scifact --codecs float32,float16,int8,pq --modes colbert,all

The token vectors of a collection built with `--colbert-codec float32` are re-written with every codec
into copies of that collection (dense, sparse, BM25 and documents shared unchanged), so each codec
re-ranks exactly the same candidates and only the MaxSim input differs: the nDCG@10 difference is
the cost of compression alone. Also reported: bytes per token, store size on disk, and the median
per-query time of the colbert re-rank (dense top-200 re-scored, one thread, encoding excluded).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report import commit_header, emit  # noqa: E402

from hsearch.evaluate.beir import evaluate  # noqa: E402
from hsearch.index.multivector import open_multivector, write_multivector  # noqa: E402
from hsearch.storage.manifest import MANIFEST, Manifest  # noqa: E402


def transcode(src: Path, dst: Path, codec: str) -> dict:
    """Copy collection `src` to `dst` with every colbert segment re-written by `codec`."""
    manifest = Manifest.load(src)
    if manifest.config.get("colbert_codec") != "float32":
        raise SystemExit(f"{src} was built with colbert codec {manifest.config.get('colbert_codec')!r}; "
                         "build the reference with --colbert-codec float32")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("colbert", "write.lock"))
    metas = []
    for seg in manifest.segments:
        reader = open_multivector(src / "segments" / seg.name / "colbert", device="cpu")
        ids = np.asarray(reader.ids)
        metas.append(write_multivector(dst / "segments" / seg.name / "colbert", ids, reader.tokens(ids), codec=codec))
    data = json.loads((dst / MANIFEST).read_text())
    data["config"]["colbert_codec"] = codec
    (dst / MANIFEST).write_text(json.dumps(data))
    n_tokens = sum(m["n_tokens"] for m in metas)
    size = sum(f.stat().st_size for s in manifest.segments for f in (dst / "segments" / s.name / "colbert").iterdir())
    return {"codec": ",".join(sorted({m["codec"] for m in metas})), "bytes_per_token": metas[0]["bytes_per_token"],
            "tokens": n_tokens, "store_bytes": size}


def rerank_ms(folder: Path, dataset: Path, limit: int) -> float:
    """Median ms per query of the colbert plan (dense top-200 re-ranked), query encoding excluded."""
    import torch

    from hsearch.engine import open_collection
    from hsearch.evaluate.beir import load_beir

    torch.set_num_threads(1)  # one thread: the figure compares codecs, not thread scheduling on a shared machine
    col = open_collection(folder)
    data = load_beir(dataset, "test", limit)
    texts = list(data.queries.values())
    encoded = col.encoder.encode_queries(texts, sparse=False)
    times = []
    for text, enc in zip(texts, encoded):
        plan = col.plan(text, "colbert", k=10)
        t0 = time.perf_counter()
        col.run(plan, encoded=enc)
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(os.cpu_count() or 1)
    return 1000 * float(np.median(times[1:] if len(times) > 1 else times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", required=True, help="collection built with --colbert-codec float32")
    ap.add_argument("--dataset", required=True, help="the BEIR folder whose corpus built it")
    ap.add_argument("--codecs", default="float32,float16,int8,pq")
    ap.add_argument("--modes", default="colbert,all")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--out", default=None, help="markdown file to append the table to")
    a = ap.parse_args(argv)
    src, dataset = Path(a.collection).resolve(), Path(a.dataset).resolve()
    modes = [m for m in a.modes.split(",") if m]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hsearch-codecs-", dir=os.environ.get("TMPDIR")) as tmp:
        for codec in a.codecs.split(","):
            dst = Path(tmp) / codec
            t0 = time.perf_counter()
            info = transcode(src, dst, codec)
            write_s = time.perf_counter() - t0
            scores = evaluate(dataset, modes, collection_dir=dst, limit_queries=a.limit_queries)
            ms = rerank_ms(dst, dataset, a.latency_queries)
            rows.append((codec, info, write_s, scores, ms))
            print(codec, info, {m: round(s["nDCG@10"], 4) for m, s in scores.items()}, f"{ms:.1f} ms",
                  file=sys.stderr, flush=True)
            shutil.rmtree(dst)
    base = {m: rows[0][3][m]["nDCG@10"] for m in modes}
    head = ["codec", "bytes/token", "store MB", "write s"] + [f"{m} nDCG@10 (delta)" for m in modes] + ["colbert ms/query"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for codec, info, write_s, scores, ms in rows:
        cells = [codec if info["codec"] == codec else f"{codec} (stored as {info['codec']})",
                 f"{info['bytes_per_token']:.0f}", f"{info['store_bytes'] / 1e6:.1f}", f"{write_s:.1f}"]
        cells += [f"{scores[m]['nDCG@10']:.4f} ({scores[m]['nDCG@10'] - base[m]:+.4f})" for m in modes]
        cells.append(f"{ms:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    n = f"first {a.limit_queries} queries" if a.limit_queries else "all test queries"
    report = (f"## {datetime.datetime.now():%Y-%m-%d %H:%M} multi-vector codecs on {dataset.name} ({n}; deltas "
              f"against {rows[0][0]}; {rows[0][1]['tokens']:,} token vectors)\n\n" + commit_header() + "\n\n"
              + "\n".join(lines) + "\n")
    emit(report, a.out)


if __name__ == "__main__":
    main()
