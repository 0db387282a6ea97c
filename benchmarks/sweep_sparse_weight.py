"""The sparse signal's fusion weight for a model's heads: nDCG@10 of dense+sparse and all (dense 0.4,
colbert 0.4) at each sparse weight, per dataset, on one collection per dataset.

    python scripts/debian_heldout.py --pairs .../debian/corpus.jsonl --out heldout   # sets the heads never saw
    python benchmarks/sweep_sparse_weight.py --model e5-small --memo MEMO \\
        --datasets heldout/en,heldout/de,heldout/fr,heldout/ja,heldout/ru,heldout/zh,heldout/de-en

Choose on held-out training-distribution data, then write the winner to the heads' fusion.json; the
test sets are scored with it afterwards, never used to choose. Transformer states are recorded in and
replayed from --memo exactly as in bench_heads.py (the same memo serves both).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_heads import StateMemo  # noqa: E402
from harness.report import commit_header, emit  # noqa: E402
from quality import cross_folder  # noqa: E402

from hsearch.evaluate.beir import as_run, load_beir, run_modes, score  # noqa: E402

GRID = (0.0, 0.025, 0.05, 0.1, 0.2, 0.4)
MODES = ("dense+sparse", "all")


def sweep(model: str, jobs: list[tuple[str, Path]], memo_root: Path, work: Path, limit: int | None) -> dict:
    from hsearch.config import CollectionConfig
    from hsearch.encode import load_encoder
    from hsearch.encode.loader import transformer_fingerprint
    from hsearch.engine import open_collection

    enc = load_encoder(model)
    fp, out = transformer_fingerprint(enc), {}
    for name, folder in jobs:
        data = load_beir(folder, "test", limit)
        StateMemo(memo_root / fp / hashlib.sha1(str(data.corpus.resolve()).encode()).hexdigest()[:12], enc.dim).attach(enc)
        col = open_collection(work / name.replace("/", "_"), create=True, encoder=enc,
                              config=CollectionConfig(model=enc.spec.name))
        col.index(data.corpus)
        ndcg = lambda mode, **o: score(as_run(run_modes(col, data.queries, [mode], **o)[mode]), data.qrels)["nDCG@10"]  # noqa: E731
        row = {"dense": ndcg("dense"), "sparse": ndcg("sparse")}
        for mode in MODES:
            # one retrieval per weight set (written before sweep_weights re-fused candidate chunks exactly)
            for w in GRID:  # explicit: the model's own default must not leak into the grid
                row[f"{mode}, sparse={w:g}"] = ndcg(mode, weights={"dense": 0.4, "sparse": w, "colbert": 0.4})
        out[name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, file=sys.stderr, flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--datasets", default="", help="comma-separated BEIR folders")
    ap.add_argument("--cross", default="", help="comma-separated QUERIES_DIR:CORPUS_DIR pairs")
    ap.add_argument("--limit-queries", type=int, default=300)
    ap.add_argument("--memo", required=True, help="folder for the recorded states (bench_heads.py's)")
    ap.add_argument("--out", default=None, help="markdown file to append the table to")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hsearch-sweep-") as tmp:
        tmp = Path(tmp)
        jobs = [("/".join(Path(p).parts[-2:]), Path(p)) for p in a.datasets.split(",") if p]
        for pair in filter(None, a.cross.split(",")):
            q, c = (Path(x) for x in pair.split(":", 1))
            jobs.append((f"{q.parent.name}/{q.name}->{c.name}", cross_folder(q, c, tmp)))
        res = sweep(a.model, jobs, Path(a.memo), tmp / "work", a.limit_queries)
    names, rows = list(res), list(next(iter(res.values())))
    lines = [f"## {datetime.datetime.now():%Y-%m-%d %H:%M} sparse weight sweep, model {a.model} "
             f"(at most {a.limit_queries} queries per set, nDCG@10)", "", commit_header(), "",
             "| signal | " + " | ".join(names) + " | mean |", "|---|" + "---:|" * (len(names) + 1)]
    for r in rows:
        v = [res[n][r] for n in names]
        lines.append(f"| {r} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {sum(v) / len(v):.4f} |")
    report = "\n".join(lines) + "\n"
    emit(report, a.out)


if __name__ == "__main__":
    main()
