"""The encoder's speed report: every runtime and precision next to sentence-transformers, in one run.

    python benchmarks/bench_encode.py --datasets ../shared/datasets --repeats 5            # speed + CLI
    python benchmarks/bench_encode.py --datasets ../shared/datasets --sections quality     # nDCG cost
    python benchmarks/bench_encode.py --quick --model minilm      # smoke run: generated texts, one repeat

Sections (`--sections`, default speed,cli):
    speed    bulk tokens/s (`encode_documents` of a length mix: SciFact abstracts and queries, QMSum
             transcripts cut at the model's window) and warm single-query latency (`encode_queries` of one
             SciFact query at a time, all three outputs) for torch fp32 / bf16 and ONNX Runtime fp32 / int8,
             next to sentence-transformers (torch backend, fp32) on the same model folder and texts. Every
             configuration runs in its own process; configurations alternate within each repeat so that
             machine noise hits all alike; the table holds medians and ratios to sentence-transformers.
    cli      `hsearch query` on the demo collection (examples/corpus), whole process under /usr/bin/time,
             median of --repeats, next to `python -c "import torch, transformers"` and to the same query with
             HSEARCH_RUNTIME=torch (the path before the ONNX one).
    quality  benchmarks/encode_quality.py: nDCG@10 per mode of each setting against fp32.
Batching is the library's (length-grouped token-budget batches); `--batching fixed` measures the
input-order baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.report import commit_header

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (precision, runtime); "st" is sentence-transformers
    "torch fp32": ("fp32", "torch"), "torch bf16": ("bf16", "torch"),
    "onnx fp32": ("fp32", "onnx"), "onnx int8": ("int8", "onnx"), "sentence-transformers fp32": None,
}


def load_texts(root: Path, n_sci: int, n_q: int, n_long: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(documents: a shuffled length mix, queries: SciFact queries not among them)."""
    rng = random.Random(seed)
    sci = [json.loads(x) for x in open(root / "scifact" / "corpus.jsonl")]
    queries = [json.loads(x)["text"] for x in open(root / "scifact" / "queries.jsonl")]
    long = [json.loads(x) for x in open(root / "qmsum" / "corpus.jsonl")]
    rng.shuffle(queries)
    texts = [f"{d['title']}\n{d['text']}" for d in rng.sample(sci, n_sci)] + queries[:n_q]
    texts += [d["text"][:20000] for d in rng.sample(long, n_long)]  # 20k chars is well past 512 tokens
    rng.shuffle(texts)
    return texts, queries[n_q:n_q + 200]


def generated_texts(n: int, seed: int = 0) -> list[str]:
    """`n` texts of 3 to 600 words from a small vocabulary: the length mix without any dataset."""
    rng = random.Random(seed)
    words = "the a of search index token vector query document dense sparse late interaction score".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 600))) for _ in range(n)]


def _texts(args):
    if args.datasets:
        return load_texts(Path(args.datasets), args.scifact, args.queries, args.long)
    return generated_texts(40), generated_texts(30, seed=1)[:30]


def child(args) -> None:
    """One configuration: bulk throughput, then single-query latency; one JSON line."""
    import logging

    logging.disable(logging.WARNING)  # truncation warnings are expected here
    texts, queries = _texts(args)
    queries = [q[:200] for q in queries][:args.single]
    config = CONFIGS[args.child]
    if config is None:
        return child_st(args, texts, queries)
    from hsearch.encode import load_encoder

    enc = load_encoder(args.model, threads=args.threads, precision=config[0], runtime=config[1])
    ids, _ = enc.tokenize([enc.spec.document_prefix + t for t in texts], enc.spec.max_length)
    tokens = sum(len(x) for x in ids)
    enc.encode_documents(texts[:16])  # warm-up
    t = time.perf_counter()
    enc.encode_documents(texts, batching=args.batching, max_batch=args.batch_size)
    bulk = time.perf_counter() - t
    lat = []
    for q in queries[:5]:
        enc.encode_queries([q])
    for q in queries:
        t = time.perf_counter()
        enc.encode_queries([q])
        lat.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts": len(texts), "tokens": tokens, "seconds": bulk, "single_ms": 1e3 * statistics.median(lat),
                      "peak_rss_mb": rss, "encoder": f"{enc.runtime}/{enc.precision}"}))


def child_st(args, texts, queries) -> None:
    """sentence-transformers on the same folder: its own tokenizer call, sorting by length and batching."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hsearch.encode.loader import resolve_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = resolve_model_dir(args.model)
    model = SentenceTransformer(str(folder), device="cpu")
    info = json.loads((folder / "hsearch_model.json").read_text()) if (folder / "hsearch_model.json").exists() else {}
    model.max_seq_length = int(info.get("max_length") or model.max_seq_length or 512)
    prefix = info.get("document_prefix", "")
    qprefix = info.get("query_prefix", "")
    model.encode([prefix + t for t in texts[:16]], batch_size=args.batch_size)
    t = time.perf_counter()
    model.encode([prefix + t for t in texts], batch_size=args.batch_size)
    bulk = time.perf_counter() - t
    lat = []
    for q in queries[:5]:
        model.encode([qprefix + q])
    for q in queries:
        t = time.perf_counter()
        model.encode([qprefix + q])
        lat.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts": len(texts), "tokens": None, "seconds": bulk, "single_ms": 1e3 * statistics.median(lat),
                      "peak_rss_mb": rss, "encoder": f"sentence-transformers {_version('sentence-transformers')}"}))


def speed(args) -> str:
    runs = {name: [] for name in CONFIGS}
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    for _ in range(args.repeats):
        for name in runs:
            out = subprocess.run(base + ["--child", name], capture_output=True, text=True)
            if out.returncode:
                runs[name].append({"error": out.stderr.strip().splitlines()[-1][:200]})
                continue
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ok = {n: [r for r in rs if "error" not in r] for n, rs in runs.items()}
    tokens = next(r["tokens"] for rs in ok.values() for r in rs if r.get("tokens"))
    lines = [f"{ok['torch fp32'][0]['texts']} texts, {tokens} tokens (after truncation at the model's window); "
             f"single queries: {args.single} SciFact queries, each encoded alone; medians of {args.repeats} runs", "",
             "| encoder | runs as | tokens/s (bulk) | x sentence-transformers | single query p50 (ms) | peak RSS (MB) |",
             "|---|---|---|---|---|---|"]
    st = ok["sentence-transformers fp32"]
    st_s = statistics.median(r["seconds"] for r in st) if st else None
    for name, rs in ok.items():
        if not rs:
            lines.append(f"| {name} | failed: {runs[name][0]['error']} | | | | |")
            continue
        s = statistics.median(r["seconds"] for r in rs)
        ratio = f"{st_s / s:.2f}x" if st_s else "n/a"
        lines.append(f"| {name} | {rs[0]['encoder']} | {tokens / s:,.0f} | {ratio} | "
                     f"{statistics.median(r['single_ms'] for r in rs):.2f} | "
                     f"{statistics.median(r['peak_rss_mb'] for r in rs):.0f} |")
    return "\n".join(lines)


def cli(args) -> str:
    """Whole-process wall time of a CLI query (median of --repeats) and what it is compared with."""
    bin_dir = Path(sys.executable).parent
    hsearch = str(bin_dir / "hsearch")
    col = Path(args.collection or tempfile.mkdtemp(prefix="hsearch-bench-cli-")) / "demo"
    env = {**os.environ, "HSEARCH_QUIET": "1", "HSEARCH_RUNTIME": "auto", "HSEARCH_PRECISION": "auto"}
    if not (col / "manifest.json").exists():
        subprocess.run([hsearch, "index", str(ROOT / "examples" / "corpus"), "-c", str(col), "-q", "-m", args.model],
                       check=True, env=env, capture_output=True)
    default = [hsearch, "query", "how much do cats sleep?", "-c", str(col), "-k", "3"]  # all+bm25
    query = default + ["--mode", "dense+sparse"]
    subprocess.run(query, check=True, env=env, capture_output=True)  # the first query exports if the index did not
    commands = {
        "hsearch query, default mode (auto: onnx fp32)": (default, env),
        "hsearch query --mode dense+sparse (auto: onnx fp32)": (query, env),
        "hsearch query --mode dense+sparse (HSEARCH_RUNTIME=torch)": (query, {**env, "HSEARCH_RUNTIME": "torch"}),
        'python -c "import torch, transformers"': ([sys.executable, "-c", "import torch, transformers"], env),
        'python -c "import onnxruntime, tokenizers, faiss"': (
            [sys.executable, "-c", "import onnxruntime, tokenizers, faiss"], env),
    }
    times = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, (cmd, e) in commands.items():
            out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], env=e, capture_output=True, text=True, check=True)
            wall, rss = out.stderr.strip().splitlines()[-1].split()
            times[name].append((float(wall), int(rss) / 1024))
    lines = [f"demo collection ({col.parent.name}), medians of {args.repeats} whole-process runs", "",
             "| command | wall (s) | peak RSS (MB) |", "|---|---|---|"]
    for name, ts in times.items():
        lines.append(f"| `{name}` | {statistics.median(t for t, _ in ts):.2f} | {statistics.median(m for _, m in ts):.0f} |")
    return "\n".join(lines)


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=None, help="folder holding scifact/, qmsum/ and xquad-r/ (BEIR layout); "
                    "required unless --quick")
    ap.add_argument("--quick", action="store_true", help="generated texts, one repeat (a smoke run, no result)")
    ap.add_argument("--sections", default="speed,cli", help="comma-separated: speed, cli, quality")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--scifact", type=int, default=300)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--long", type=int, default=40)
    ap.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    ap.add_argument("--batch-size", type=int, default=128, help="the cap of texts per batch (the library's default)")
    ap.add_argument("--batching", choices=["tokens", "fixed"], default="tokens")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--collection", default=None, help="cli: where to build the demo collection (default: a temp dir)")
    ap.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.datasets and not args.quick:
        ap.error("give --datasets (the folder holding scifact/, qmsum/ and xquad-r/), or --quick")
    if args.quick:
        args.repeats, args.single = 1, 10
    if args.child:
        return child(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    head = (f"model {args.model}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
            f"torch {_version('torch')}, onnxruntime {_version('onnxruntime')}, "
            f"sentence-transformers {_version('sentence-transformers')}")
    print(commit_header() + "\n")
    print(head + "\n")
    for section in sections:
        if section == "speed":
            print(speed(args) + "\n")
        elif section == "cli":
            print(cli(args) + "\n")
        elif section == "quality":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import encode_quality

            argv = ["--model", args.model] + (["--datasets", args.datasets] if args.datasets else [])
            encode_quality.main(argv + (["--quick"] if args.quick else []))
        else:
            ap.error(f"unknown section {section!r}; choose from speed, cli, quality")


if __name__ == "__main__":
    main()
