"""The same plans on the same collection, timed under two checkouts of hsearch, alternating processes.

bench_engine.py's rows move by 10-20% from one run to the next on a shared machine; whether a change made a
plan faster or slower is better read from checkouts timed in turns, each in a fresh process:

    git worktree add /tmp/before <commit>
    python benchmarks/compare_checkouts.py --checkouts /tmp/before,. --collection /tmp/bench-syn/synthetic/hsearch \\
        --modes sparse,dense+sparse,dense+bm25 --rounds 3

The collection is bench_engine.py's synthetic one (`--synthetic 100000 --work DIR`: DIR/synthetic/hsearch), whose
queries and query vectors are rebuilt here the way bench_engine.py makes them (harness/synthetic.py); or, with
`--dataset DIR`, a collection of that BEIR dataset's corpus, timed on its test queries encoded by the collection's
own query encoder. Per
checkout, round and mode: one warm-up pass over the queries, then 3 timed passes of `Collection.run`
(query encoding excluded); the p50 over every timed query. The report gives each round's p50 and their median.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header, emit  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
import hsearch
from hsearch.engine import open_collection
if sys.argv[5]:  # a BEIR dataset: its test queries, encoded by the collection's own model
    from pathlib import Path
    from harness.beir_queries import load_test_queries
    queries = load_test_queries(Path(sys.argv[5]))
    col = open_collection(sys.argv[1])
    encs = col.query_encoder.encode_queries(queries)
else:  # bench_engine.py's synthetic queries and test encoder
    from harness.synthetic import make_corpus, make_queries
    from hsearch.testing import FakeEncoder
    texts, vocab, word, offsets, counts = make_corpus(int(sys.argv[3]), seed=0)
    queries = make_queries(200, vocab, word, offsets, counts, seed=1)
    enc = FakeEncoder(dim=384, colbert_dim=128, colbert_tokens=48, rank=48, seed=0)
    col = open_collection(sys.argv[1], encoder=enc)
    encs = enc.encode_queries(queries)
out = {"hsearch": hsearch.__file__}
for mode in sys.argv[2].split(","):
    plans = [col.plan(q, mode, k=10) for q in queries]
    for p, e in zip(plans, encs):
        col.run(p, encoded=e)
    times = []
    for _ in range(3):
        for p, e in zip(plans, encs):
            t = time.perf_counter(); col.run(p, encoded=e); times.append(time.perf_counter() - t)
    out[mode] = float(np.median(times) * 1e3)
print(json.dumps(out))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkouts", required=True, help="two or more comma-separated checkout folders (repository roots)")
    ap.add_argument("--collection", required=True, type=lambda p: str(Path(p).resolve()),
                    help="bench_engine.py's synthetic collection folder, or a collection of --dataset")
    ap.add_argument("--chunks", type=int, default=100_000, help="the synthetic corpus size it was built with")
    ap.add_argument("--dataset", default="", type=lambda p: str(Path(p).resolve()) if p else "",
                    help="a BEIR dataset folder whose corpus the collection holds: its test queries are timed")
    ap.add_argument("--modes", default="sparse,dense+sparse")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="markdown file to append the report to")
    a = ap.parse_args(argv)
    checkouts = [Path(c).resolve() for c in a.checkouts.split(",") if c]
    modes = [m for m in a.modes.split(",") if m]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got = {c: [] for c in checkouts}
    for r in range(a.rounds):
        for c in checkouts:
            res = subprocess.run([sys.executable, "-c", CHILD, a.collection, ",".join(modes), str(a.chunks),
                                  str(Path(__file__).resolve().parent), a.dataset], env={**env, "PYTHONPATH": str(c)},
                                 cwd=c, capture_output=True, text=True, check=True)  # cwd: `-c` puts it first on the path
            row = json.loads(res.stdout.strip().splitlines()[-1])
            if Path(row["hsearch"]).resolve().parents[1] != c:
                raise SystemExit(f"{c}: the child imported {row['hsearch']}, not this checkout's hsearch")
            got[c].append(row)
            print(f"round {r + 1} {c}: " + ", ".join(f"{m} {row[m]:.3f}" for m in modes), file=sys.stderr, flush=True)
    commits = {c: subprocess.run(["git", "-C", str(c), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() for c in checkouts}
    lines = [f"## {datetime.datetime.now():%Y-%m-%d %H:%M} checkouts compared on {a.collection} ({a.rounds} rounds, "
             "p50 ms per round, query encoding excluded, one thread)", "", commit_header(), "",
             "| mode | " + " | ".join(f"{c.name} ({commits[c]})" for c in checkouts) + " |",
             "|---|" + "---|" * len(checkouts)]
    for m in modes:
        cells = [" / ".join(f"{row[m]:.3f}" for row in got[c]) + f": **{statistics.median(row[m] for row in got[c]):.3f}**"
                 for c in checkouts]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    emit("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
