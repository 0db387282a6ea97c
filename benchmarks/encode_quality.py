"""What each runtime and precision costs in retrieval quality: nDCG@10 per mode against torch fp32.

Part of the encoder's report (benchmarks/bench_encode.py --quality; runnable alone):

    python benchmarks/encode_quality.py --datasets ../shared/datasets
    python benchmarks/encode_quality.py --quick     # a smoke run: the tiny xquad-r slice the tests build

Settings, each a collection of its own (documents) and its own query encoder:
    fp32        torch fp32 documents and queries: the reference
    auto        what `auto` picks on this machine (bf16 documents where the CPU has it; ONNX fp32 queries)
    int8-query  the reference's documents, queries by ONNX Runtime int8 (the cheap half of int8)
    int8        ONNX Runtime int8 documents and queries
Sets: SciFact, XQuAD-R en and de, and de->en (German questions, English corpus: cross-lingual).
Collections are cached ($HSEARCH_CACHE/eval, keyed by how documents were encoded), so a rerun after
a change to the query path only encodes queries.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import commit_header  # noqa: E402

SETTINGS = {  # name -> (document precision, runtime), (query precision, runtime)
    "fp32": (("fp32", "torch"), ("fp32", "torch")),
    "auto": (("auto", "auto"), ("auto", "auto")),
    "int8-query": (("fp32", "torch"), ("int8", "onnx")),
    "int8": (("int8", "onnx"), ("int8", "onnx")),
}
MODES = ("dense", "sparse", "colbert", "dense+sparse", "all")


def measure(sets: dict[str, Path], model: str, settings=SETTINGS, modes=MODES, limit_queries=None,
            progress=False) -> dict:
    """{set: {setting: {mode: nDCG@10}}} plus each setting's resolved encoders under "_encoders"."""
    from hsearch.engine import open_collection
    from hsearch.evaluate.beir import as_run, eval_collection, load_beir, run_modes, score

    out, encoders = {}, {}
    for name, folder in sets.items():
        data = load_beir(folder, "test", limit_queries)
        out[name] = {}
        for setting, ((dp, dr), (qp, qr)) in settings.items():
            built = eval_collection(data.corpus, model, progress=progress, precision=dp, runtime=dr)
            col = open_collection(built.folder, precision=qp, runtime=qr)
            hits = run_modes(col, data.queries, list(modes), k=100, progress=progress)
            out[name][setting] = {m: score(as_run(hits[m]), data.qrels)["nDCG@10"] for m in modes}
            q = col.query_encoder
            encoders[setting] = (built.info()["precisions"], f"{q.runtime}/{q.precision}")
    out["_encoders"] = encoders
    return out


def report(result: dict, modes=MODES) -> str:
    encoders = result.pop("_encoders")
    lines = ["| setting | documents | queries |", "|---|---|---|"]
    lines += [f"| {s} | {', '.join(d)} | {q} |" for s, (d, q) in encoders.items()]
    lines += ["", "nDCG@10, and its change against fp32 in brackets:", "",
              "| set | setting | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    worst = {}
    for name, by_setting in result.items():
        ref = by_setting["fp32"]
        for setting, scores in by_setting.items():
            cells = []
            for m in modes:
                d = scores[m] - ref[m]
                worst[setting] = min(worst.get(setting, 0.0), d)
                cells.append(f"{scores[m]:.4f}" + ("" if setting == "fp32" else f" ({d:+.4f})"))
            lines.append(f"| {name} | {setting} | " + " | ".join(cells) + " |")
    lines += ["", "Largest drop against fp32 over every set and mode: " +
              ", ".join(f"{s} {w:+.4f}" for s, w in worst.items() if s != "fp32")]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=None, help="folder holding scifact/ and xquad-r/ (BEIR layout)")
    ap.add_argument("--model", default="e5-small")
    ap.add_argument("--quick", action="store_true", help="xquad-r en from the datasets folder, 20 queries")
    ap.add_argument("--limit-queries", type=int, default=None)
    args = ap.parse_args(argv)
    if not args.datasets:
        ap.error("give --datasets (the folder holding scifact/ and xquad-r/)")
    from quality import cross_folder

    root = Path(args.datasets)
    tmp = Path(tempfile.mkdtemp(prefix="hsearch-cross-"))
    sets = ({"xquad-r en": root / "xquad-r" / "en"} if args.quick else
            {"scifact": root / "scifact", "xquad-r en": root / "xquad-r" / "en", "xquad-r de": root / "xquad-r" / "de",
             "xquad-r de->en": cross_folder(root / "xquad-r" / "de", root / "xquad-r" / "en", tmp)})
    result = measure(sets, args.model, limit_queries=20 if args.quick else args.limit_queries,
                     progress=sys.stderr.isatty())
    print(commit_header() + "\n")
    print(report(result))


if __name__ == "__main__":
    main()
