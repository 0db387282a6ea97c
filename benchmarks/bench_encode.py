"""Encode throughput of length-grouped token-budget batching vs fixed-size batching.

    python benchmarks/bench_encode.py --datasets ../shared/datasets --repeats 3
    python benchmarks/bench_encode.py --quick --model minilm     # smoke run: 40 generated texts, one repeat

Texts: scifact abstracts and queries plus qmsum transcripts (cut to the model's window), shuffled,
so short and long texts mix as in a real corpus. Each run is its own process (clean peak RSS);
configurations alternate so machine noise hits both alike. Prints a markdown table of medians.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def load_texts(root: Path, n_sci: int, n_q: int, n_long: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    sci = [json.loads(x) for x in open(root / "scifact" / "corpus.jsonl")]
    queries = [json.loads(x)["text"] for x in open(root / "scifact" / "queries.jsonl")]
    long = [json.loads(x) for x in open(root / "qmsum" / "corpus.jsonl")]
    texts = [f"{d['title']}\n{d['text']}" for d in rng.sample(sci, n_sci)] + rng.sample(queries, n_q)
    texts += [d["text"][:20000] for d in rng.sample(long, n_long)]  # 20k chars is well past 512 tokens
    rng.shuffle(texts)
    return texts


def generated_texts(n: int, seed: int = 0) -> list[str]:
    """`n` texts of 3 to 600 words from a small vocabulary: the length mix without any dataset."""
    rng = random.Random(seed)
    words = "the a of search index token vector query document dense sparse late interaction score".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 600))) for _ in range(n)]


def child(args) -> None:
    import logging

    logging.disable(logging.WARNING)  # truncation warnings are expected here
    from hsearch.encode import load_encoder

    texts = (load_texts(Path(args.datasets), args.scifact, args.queries, args.long) if args.datasets
             else generated_texts(40))
    enc = load_encoder(args.model, threads=args.threads)
    ids, _ = enc.tokenize([enc.spec.document_prefix + t for t in texts], enc.spec.max_length)
    tokens = sum(len(x) for x in ids)
    enc.encode_documents(texts[:8])  # warm-up
    t = time.perf_counter()
    enc.encode_documents(texts, batching=args.batching, max_batch=args.batch_size, token_budget=args.budget)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts": len(texts), "tokens": tokens, "seconds": dt, "peak_rss_mb": rss}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=None, help="folder holding scifact/ and qmsum/ (BEIR layout); "
                    "required unless --quick")
    ap.add_argument("--quick", action="store_true", help="40 generated texts, one repeat (a smoke run, no result)")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--scifact", type=int, default=300)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--long", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32, help="fixed batch size, and the cap for token batches")
    ap.add_argument("--budget", type=int, default=8192, help="tokens per token-budget batch (padded)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=["tokens", "fixed"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.datasets and not args.quick:
        ap.error("give --datasets (the folder holding scifact/ and qmsum/), or --quick")
    if args.quick:
        args.repeats = 1
    if args.child:
        args.batching = args.child
        return child(args)
    runs = {"tokens": [], "fixed": []}
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    for _ in range(args.repeats):
        for mode in runs:
            out = subprocess.run(base + ["--child", mode], capture_output=True, text=True, check=True).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    print(f"model {args.model}; {runs['tokens'][0]['texts']} texts, {runs['tokens'][0]['tokens']} tokens; "
          f"medians of {args.repeats} runs\n")
    print("| batching | texts/s | tokens/s | peak RSS (MB) |\n|---|---|---|---|")
    med = {}
    for mode, rs in runs.items():
        s = statistics.median(r["seconds"] for r in rs)
        med[mode] = s
        r0 = rs[0]
        print(f"| {mode} ({'budget ' + str(args.budget) if mode == 'tokens' else 'batch ' + str(args.batch_size)}) "
              f"| {r0['texts'] / s:.1f} | {r0['tokens'] / s:.0f} | {statistics.median(r['peak_rss_mb'] for r in rs):.0f} |")
    print(f"\nthroughput ratio tokens/fixed: {med['fixed'] / med['tokens']:.2f}x")


if __name__ == "__main__":
    main()
