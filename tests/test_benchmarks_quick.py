"""Every benchmark script's quick variant runs end to end (no ../shared, no network), so none can rot.

One parametrised test finds every `benchmarks/*.py` with a `main` and runs its quick variant from
QUICK: the arguments (the inputs it needs are built here) and a checker that asserts on the values
parsed from its report. A script with a `main` and no entry fails the test; one that cannot have a
quick variant is listed in NO_QUICK with the reason. Every report must name the commit it ran on.

Timings are not checked (they depend on the machine); what is checked is that each script writes the
table it promises, and that the values in it are the right ones where they are determined (bytes per
token of each codec, an exact codec's error, nDCG deltas against the reference, counts) and agree with
each other (ratios against the columns they are computed from).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from hsearch import open_collection
from hsearch.config import CollectionConfig
from hsearch.testing import FakeEncoder

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if re.search(r"^def main\(", p.read_text(), re.M))


def run(script, *args, tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=900, env={**os.environ, "HSEARCH_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


class Ctx:
    """What a quick variant's arguments and checker share: a scratch folder, the tiny model and the
    small BEIR folder (each built only when asked for), the report files the script writes."""

    def __init__(self, tmp_path, request, monkeypatch):
        self.tmp, self.request, self.monkeypatch = tmp_path, request, monkeypatch
        self.reports: list[Path] = []

    @property
    def model(self):
        return self.request.getfixturevalue("tiny_bgem3")

    def beir(self):
        return small_beir(self.tmp / "beir") if not (self.tmp / "beir").exists() else self.tmp / "beir"

    def report(self, name) -> Path:
        """A path the script writes its report to (read back for the commit check)."""
        self.reports.append(self.tmp / name)
        return self.tmp / name


@dataclass(frozen=True)
class Quick:
    args: Callable  # (ctx) -> the script's arguments
    check: Callable  # (ctx, stdout) -> None: asserts on parsed values
    needs: tuple = ()  # (module, why): skipped where the module is not installed
    in_process: Callable | None = None  # (ctx, argv) -> stdout, for a script run with a test double plugged in


def small_beir(root):
    (root / "qrels").mkdir(parents=True)
    docs = {f"d{i}": f"report {i} on topic {i % 7}: glaciers, volcanoes and tides, item {i * 3}" for i in range(60)}
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"report {i} topic {i % 7}"})
                                                + "\n" for i in range(8)))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n"
                                                                                      for i in range(8)))
    return root


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


# ------------------------------------------------------------------------------ quality.py


def quality_args(ctx):
    return ["--datasets", ctx.beir(), "--model", ctx.model, "--modes", "bm25,dense,all", "--maxsim", "int8,float",
            "--out", ctx.report("q.md")]


def quality_check(ctx, stdout):
    rows = {c[1].removesuffix(" [maxsim int8]"): c for c in map(cells, (ctx.tmp / "q.md").read_text().splitlines())
            if c[0] == "beir"}
    assert {"hsearch bm25", "hsearch dense", "hsearch all", "hsearch all [maxsim float]"} <= set(rows), rows
    # each row is evaluate()'s result on the same cached collection, printed to 4 decimals
    ctx.monkeypatch.setenv("HSEARCH_CACHE", str(ctx.tmp / "cache"))
    from hsearch.evaluate.beir import evaluate

    got = evaluate(ctx.beir(), ["bm25", "dense", "all"], model=str(ctx.model))
    assert len(list((ctx.tmp / "cache" / "eval").iterdir())) == 1  # the script's collection, reused
    for mode, scores in got.items():
        assert [float(x) for x in rows[f"hsearch {mode}"][2:5]] == \
            [round(scores[m], 4) for m in ("nDCG@10", "Recall@100", "MRR@10")], mode
    assert rows["hsearch bm25"][2:5] == ["1.0000"] * 3  # each query's words name its one document


# ------------------------------------------------------------------------------ bm25_analyzers.py


def bm25_analyzers_check(ctx, stdout):
    text = (ctx.tmp / "bm25.md").read_text()
    head = cells(next(line for line in text.splitlines() if line.startswith("| dataset |")))
    (row,) = [cells(line) for line in text.splitlines() if line.startswith("| beir |")]
    assert head[:3] == ["dataset", "en_stem", "auto"]
    assert row[1:3] == ["1.0000", "1.0000"]  # each query's words name its one document, whatever the analyzer
    assert "- beir: english 60" in text  # every document detected as English


# ------------------------------------------------------------------------------ bench_colbert_codecs.py


def colbert_codecs_args(ctx):
    col = open_collection(ctx.tmp / "f32", create=True, model=str(ctx.model),
                          config=CollectionConfig(colbert_codec="float32"))
    col.index(ctx.beir() / "corpus.jsonl")
    return ["--collection", ctx.tmp / "f32", "--dataset", ctx.beir(), "--codecs", "float32,float16,int8",
            "--latency-queries", 3, "--out", ctx.report("c.md")]


def colbert_codecs_check(ctx, stdout):
    from hsearch.evaluate.beir import evaluate

    text = (ctx.tmp / "c.md").read_text()
    rows = {c[0]: c for c in map(cells, text.splitlines()) if c[0] in ("float32", "float16", "int8")}
    assert list(rows) == ["float32", "float16", "int8"], text
    dim = open_collection(ctx.tmp / "f32").encoder.colbert_dim
    # bytes per token: 4 per float32 value, 2 per float16 value, 1 per int8 value + a float16 scale
    assert [float(rows[c][1]) for c in rows] == [4 * dim, 2 * dim, dim + 2]
    tokens = int(re.search(r"; ([\d,]+) token vectors\)", text).group(1).replace(",", ""))
    assert tokens > 60  # every document has several tokens
    # the float32 copy scores as the collection it was copied from; deltas are against it
    ref = evaluate(ctx.beir(), ["colbert", "all"], collection_dir=ctx.tmp / "f32")
    for codec, row in rows.items():
        for col_i, mode in ((4, "colbert"), (5, "all")):
            value, delta = re.fullmatch(r"([\d.]+) \(([+-][\d.]+)\)", row[col_i]).groups()
            assert 0.0 <= float(value) <= 1.0
            assert float(value) - float(rows["float32"][col_i].split()[0]) == pytest.approx(float(delta), abs=1e-4)
            if codec == "float32":
                assert float(value) == pytest.approx(ref[mode]["nDCG@10"], abs=5e-5) and delta == "+0.0000"
            else:  # near-lossless codecs on the same candidates
                assert abs(float(delta)) <= 0.05, (codec, mode, row)
        assert float(row[6]) >= 0  # ms per query: a number


# ------------------------------------------------------------------------------ bench_encode.py


def encode_check(ctx, out):
    from hsearch.encode.precision import cpu_has_bf16

    rows = {r[0]: r for r in (cells(line) for line in out.splitlines() if line.startswith("| "))}
    texts, tokens = map(int, re.search(r"(\d+) texts, (\d+) tokens", out).groups())
    assert texts == 40 and tokens >= texts
    runs_as = {"torch fp32": "torch/fp32", "onnx fp32": "onnx/fp32", "onnx int8": "onnx/int8"}
    if cpu_has_bf16():
        runs_as["torch bf16"] = "torch/bf16"
    else:  # refused on a CPU without bf16 instructions, with the reason in the row
        assert "no bf16 instructions" in rows["torch bf16"][1]
    st = rows["sentence-transformers fp32"]
    st_tokens_s = float(st[2].replace(",", "")) if not st[1].startswith("failed") else None
    for name, encoder in runs_as.items():
        _, got, tokens_s, ratio, p50, rss = rows[name]
        assert got == encoder and float(tokens_s.replace(",", "")) > 0 and float(p50) > 0 and float(rss) > 0
        if st_tokens_s:  # the ratio column is this row's tokens/s over sentence-transformers', up to rounding
            assert float(ratio.rstrip("x")) == pytest.approx(float(tokens_s.replace(",", "")) / st_tokens_s,
                                                            rel=0.01, abs=0.006)
        else:
            assert ratio == "n/a"
    cli = {r[0].strip("`"): r for r in rows.values() if r[0].startswith("`")}
    assert len(cli) == 5 and all(float(r[1]) > 0 for r in cli.values())
    # the ONNX query process never imports torch, whatever the mode: it holds far less memory than the torch one
    torch_mb = float(cli["hsearch query --mode dense+sparse (HSEARCH_RUNTIME=torch)"][2])
    for name in ("hsearch query --mode dense+sparse (auto: onnx fp32)", "hsearch query, default mode (auto: onnx fp32)"):
        assert float(cli[name][2]) < 0.8 * torch_mb, name


# ------------------------------------------------------------------------------ encode_quality.py


def encode_quality_args(ctx):
    pieces_beir(ctx.tmp / "datasets" / "xquad-r" / "en")  # --quick reads xquad-r/en of --datasets
    return ["--quick", "--model", ctx.model, "--datasets", ctx.tmp / "datasets"]


def encode_quality_check(ctx, out):
    rows = [cells(line) for line in out.splitlines() if line.startswith("| xquad-r en |")]
    assert [r[1] for r in rows] == ["fp32", "auto", "int8-query", "int8"], out
    ref = [float(x) for x in rows[0][2:]]
    assert len(ref) == 5 and all(0 <= x <= 1 for x in ref)
    for r in rows[1:]:  # each value and its bracketed change against fp32 agree
        for value_delta, base in zip(r[2:], ref):
            value, delta = re.fullmatch(r"([\d.]+) \(([+-][\d.]+)\)", value_delta).groups()
            assert float(value) - base == pytest.approx(float(delta), abs=1.5e-4), r
    int8 = {c[0]: c for c in map(cells, out.splitlines()) if len(c) == 3}["int8"]
    assert int8[2] == "onnx/int8", int8  # the int8 setting's queries ran on ONNX Runtime int8


# ------------------------------------------------------------------------------ bench_engine.py


def engine_args(ctx):
    """--quick (the synthetic run) and, in the same call, the --collection run on a tiny model's collection."""
    col = open_collection(ctx.tmp / "col", create=True, model=str(ctx.model))
    col.index(ctx.beir() / "corpus.jsonl")
    return ["--quick", "--collection", ctx.tmp / "col", "--dataset", ctx.beir(), "--index-note", "42 s, typed by hand",
            "--out", ctx.tmp / "out", "--work", ctx.tmp / "work"]


def engine_check(ctx, stdout):
    reports = {p.name: p.read_text() for p in (ctx.tmp / "out").glob("engine-*.md")}
    assert sorted(reports) == ["engine-col.md", "engine-quick-synthetic-2k.md"], sorted(reports)
    for name, text in reports.items():
        for row in ("| hsearch | dense |", "| hsearch | sparse |", "| hsearch | bm25 |", "| hsearch | colbert |",
                    "| hsearch | dense+sparse |", "| hsearch | all |", "| hsearch | **total, excluding encoding** |",
                    "| hsearch store call | sparse |", "| hsearch | all+bm25 (low-coverage rule 0.5:colbert=1) |",
                    "| hsearch store call | bm25 coverage of the query (the low-coverage rule's check) |"):
            assert row in text, (name, row)
        assert "### Query latency, excluding query encoding" in text and "nproc=" in text
        assert "bench_engine.py --quick" in text  # the exact command is part of the report
        # qdrant-edge runs each mode bare and returning its hits' texts, each compared with hsearch's row
        for row in ("| qdrant-edge | dense |", "| qdrant-edge | dense + text |", "| qdrant-edge | all + text |",
                    "| qdrant-edge dense + text | hsearch dense (depth 10) |"):
            assert row in text, (name, row)
        # every overlap is a share of the reference's top-10
        latency = [cells(line) for line in text.split("### Query latency, excluding")[1].split("###")[0].splitlines()
                   if line.startswith("| ") and "---" not in line][1:]
        assert latency and all(0 <= float(r[4]) <= 1 for r in latency if r[4]), latency
    # the hand-typed index time is a note under the index table, never a row of a measured table
    col = reports["engine-col.md"]
    assert "Note (given with --index-note, not measured by this run): full `hsearch index` of this collection, " \
        "including encoding: 42 s, typed by hand" in col
    assert not any(line.startswith("|") and "typed by hand" in line for line in col.splitlines())
    assert "### Query latency including query encoding" in col  # the collection run times the real model too


# ------------------------------------------------------------------------------ bench_heads.py


def heads_check(ctx, stdout):
    text = (ctx.tmp / "report.md").read_text()
    for row in ("| toy | before: dense |", "| toy | other: sparse |", "| toy | other: all |"):
        assert row in text, row
    assert re.search(r"toy / other: \d+ s, transformer states 0 computed", text)


# ------------------------------------------------------------------------------ bench_maxsim.py


def maxsim_check(ctx, out):
    rows = {r[1]: r for r in (line.split() for line in out.splitlines()) if len(r) == 10 and r[0] == "32"}
    assert set(rows) == {"float32", "int8", "float16"}, out
    bytes_per_token = {c: float(r[2]) for c, r in rows.items()}
    assert bytes_per_token == {"float32": 128, "int8": 34, "float16": 64}
    assert {int(r[4]) for r in rows.values()} == {20} and len({r[5] for r in rows.values()}) == 1  # same tokens
    assert 20 * 4 <= int(rows["int8"][5]) <= 20 * 16 * 4  # 20 candidates of ~16 tokens
    err = {c: float(r[9]) for c, r in rows.items()}  # mean |score - exact MaxSim|
    assert err["float32"] < 1e-5 and err["float16"] < 1e-3 and err["int8"] < 1e-2
    assert err["int8"] > 1e-5 and err["int8"] > 3 * err["float16"]  # lossy: measured against exact float32 MaxSim
    assert all(float(x) >= 0 for r in rows.values() for x in r[6:9])  # timings: numbers (0.0 on a fast machine)


# ------------------------------------------------------------------------------ bench_sparse.py


def sparse_check(ctx, out):
    docs, per_doc = re.search(r"generated (\d+) docs \(([\d.]+) terms/doc\)", out).groups()
    postings, terms = map(int, re.search(r"\((\d+) postings, (\d+) terms,", out).groups())
    assert int(docs) == 2000 and abs(postings - 2000 * float(per_doc)) <= 2000 * 0.05 and 0 < terms <= 5000
    assert "default == compiled == pruned == exhaustive top-10 on 10/10 queries" in out
    assert float(re.search(r"first compiled search of this process: ([\d.]+) s", out).group(1)) > 0
    assert "(lifted by --any-size)" in out  # 2,000 docs: only so is the pruned column MaxScore
    med = {}
    for path, median, hits in re.findall(r"search top-10 +(\w+): median ([\d.]+) ms .*\(([\d.]+) hits/query\)", out):
        med[path] = float(median)
        assert float(hits) == 10.0
    assert set(med) == {"default", "compiled", "pruned", "exhaustive"} and min(med.values()) > 0
    # the speed-ups are exhaustive / path, up to the printed rounding: medians to 0.001 ms (so a ratio of
    # medians a few hundredths of a ms long can move by several percent) and the ratio to 0.01
    half = 0.0005
    for path in ("default", "compiled", "pruned"):
        wall = float(re.search(rf"median speed-up of {path} over exhaustive: ([\d.]+)x wall", out).group(1))
        low = (med["exhaustive"] - half) / (med[path] + half)
        high = (med["exhaustive"] + half) / max(med[path] - half, 1e-9)
        assert low - 0.005 <= wall <= high + 0.005, (path, wall, low, high)


# ------------------------------------------------------------------------------ sweep_sparse_weight.py


def pieces_beir(root, first=3, last=2):
    """A BEIR folder in the tiny model's own vocabulary (its tokenizer was trained on these sentences),
    so dense, sparse and multi-vector scores differ from document to document: every ordered pair of
    two distinct sentences is a document, a query takes words of both."""
    from tiny_model import CORPUS

    s = list(dict.fromkeys(CORPUS))
    pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if i < j]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}-{j}", "title": "", "text": f"{s[i]} {s[j]}"})
                                               + "\n" for i, j in pairs))
    asked = [(i, j) for i, j in pairs if (7 * i + j) % 4 == 0]
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}-{j}", "text": " ".join(
        s[i].split()[:first] + s[j].split()[-last:])}) + "\n" for i, j in asked))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}-{j}\td{i}-{j}\t1\n"
                                                                                      for i, j in asked))
    return root


def sweep_args(ctx):
    a, b = pieces_beir(ctx.tmp / "a" / "beir"), pieces_beir(ctx.tmp / "b" / "beir", first=2, last=3)
    return ["--model", ctx.model, "--datasets", f"{a},{b}", "--memo", ctx.tmp / "memo", "--out", ctx.report("sweep.md")]


def sweep_check(ctx, stdout):
    text = (ctx.tmp / "sweep.md").read_text()
    assert "| signal | a/beir | b/beir | mean |" in text, text
    lines = text.splitlines()
    table = lines[lines.index("| signal | a/beir | b/beir | mean |") + 2:]
    rows = {c[0]: [float(x) for x in c[1:]] for c in map(cells, table) if len(c) == 4}
    grid = [f"{m}, sparse={w}" for m in ("dense+sparse", "all") for w in ("0", "0.025", "0.05", "0.1", "0.2", "0.4")]
    assert list(rows) == ["dense", "sparse"] + grid
    for r in rows.values():
        assert all(0 <= x <= 1 for x in r) and r[2] == pytest.approx((r[0] + r[1]) / 2, abs=1e-4)  # the mean column
    assert rows["dense+sparse, sparse=0"] == rows["dense"]  # a zero weight leaves dense alone
    assert len({tuple(v) for v in rows.values()}) > 3  # the signals differ on this data: the sweep can show something
    # the dense and sparse rows are what evaluate() gives on a collection built the ordinary way
    ctx.monkeypatch.setenv("HSEARCH_CACHE", str(ctx.tmp / "cache"))
    from hsearch.evaluate.beir import evaluate

    for col_i, folder in enumerate((ctx.tmp / "a" / "beir", ctx.tmp / "b" / "beir")):
        got = evaluate(folder, ["dense", "sparse"], model=str(ctx.model))
        assert [rows["dense"][col_i], rows["sparse"][col_i]] == [round(got[m]["nDCG@10"], 4) for m in ("dense", "sparse")]


# ------------------------------------------------------------------------------ sweep_fusion.py


def fusion_sweep_args(ctx):
    a, b = pieces_beir(ctx.tmp / "fa" / "beir"), pieces_beir(ctx.tmp / "fb" / "beir", first=2, last=3)
    return ["--model", ctx.model, "--datasets", f"{a},{b}", "--modes", "dense+sparse,dense+bm25", "--out",
            ctx.report("fusion.md")]


def fusion_sweep_check(ctx, stdout):
    text = (ctx.tmp / "fusion.md").read_text()
    head = "| mode | fusion | best weights | fa/beir | fb/beir | mean |"
    assert head in text and "Commit:" in text, text
    lines = text.splitlines()
    table = [c for c in map(cells, lines[lines.index(head) + 2:]) if len(c) == 6]
    singles = {c[0]: [float(x) for x in c[3:]] for c in table if c[1] == "-"}
    fused = {(c[0], c[1]): [float(x) for x in c[3:]] for c in table if c[1] != "-"}
    assert list(singles) == ["dense", "sparse", "colbert", "bm25"]
    assert {m for m, _ in fused} == {"dense+sparse", "dense+bm25"} and len(fused) == 8  # 4 fusions each
    for r in [*singles.values(), *fused.values()]:
        assert all(0 <= x <= 1 for x in r) and r[2] == pytest.approx((r[0] + r[1]) / 2, abs=1e-4)
    # each fused winner is at least its mode's best single signal: a weight of 1 on that signal is on the grid
    for (mode, fusion), r in fused.items():
        if fusion.startswith("weighted"):
            assert r[2] >= max(singles[s][2] for s in mode.split("+")) - 0.02, (mode, fusion)
    best = float(re.search(r"Best per mean: .*? ([\d.]+);", text).group(1))
    assert best == max(r[2] for r in fused.values())
    # the single rows are what evaluate() gives on a collection built the ordinary way (torch fp32)
    ctx.monkeypatch.setenv("HSEARCH_CACHE", str(ctx.tmp / "cache"))
    from hsearch.evaluate.beir import evaluate

    for col_i, folder in enumerate((ctx.tmp / "fa" / "beir", ctx.tmp / "fb" / "beir")):
        got = evaluate(folder, ["dense", "bm25"], model=str(ctx.model), precision="fp32", runtime="torch")
        assert [singles["dense"][col_i], singles["bm25"][col_i]] == [round(got[m]["nDCG@10"], 4) for m in ("dense", "bm25")]


# ------------------------------------------------------------------------------ sweep_coverage.py


def coverage_sweep_args(ctx):
    a, b = pieces_beir(ctx.tmp / "ca" / "beir"), pieces_beir(ctx.tmp / "cb" / "beir", first=2, last=3)
    return ["--model", ctx.model, "--datasets", f"{a},{b}", "--out", ctx.report("coverage.md")]


def coverage_sweep_check(ctx, stdout):
    text = (ctx.tmp / "coverage.md").read_text()
    head = "| rule | ca/beir | cb/beir | mean |"
    assert head in text and "Commit:" in text, text
    lines = text.splitlines()
    rules = {c[0]: [float(x) for x in c[1:]] for c in map(cells, lines[lines.index(head) + 2:]) if len(c) == 4}
    assert list(rules) == ["fixed", "bm25 x c", "bm25 x c^2", "bm25, sparse x c", "bm25, sparse x c^2",
                           "bm25, sparse: 0 below c 0.5"]
    for r in rules.values():
        assert all(0 <= x <= 1 for x in r) and r[2] == pytest.approx((r[0] + r[1]) / 2, abs=1e-4)
    best = re.search(r"Best scaling rule by the mean: (.*) \(([\d.]+); fixed ([\d.]+)\)", text)
    assert float(best.group(2)) == max(r[2] for r in rules.values()) and float(best.group(3)) == rules["fixed"][2]
    regimes = [c for c in map(cells, lines) if len(c) == 6 and c[0] in ("0.25", "0.5", "0.75")]
    assert [c[0] for c in regimes] == ["0.25", "0.5", "0.75"] and all(0 <= float(c[5]) <= 1 for c in regimes)
    # `fixed` is what the engine gives: all+bm25 with the same weights and no low-coverage rule
    ctx.monkeypatch.setenv("HSEARCH_CACHE", str(ctx.tmp / "cache"))
    from hsearch.evaluate.beir import evaluate

    base = re.search(r"Base weights: (.*)", text).group(1)
    for col_i, folder in enumerate((ctx.tmp / "ca" / "beir", ctx.tmp / "cb" / "beir")):
        got = evaluate(folder, ["all+bm25"], model=str(ctx.model), precision="fp32", runtime="torch",
                       weights=base.replace(" ", ""), normalize="minmax", low_coverage="off")
        assert rules["fixed"][col_i] == pytest.approx(got["all+bm25"]["nDCG@10"], abs=1e-4)


# ------------------------------------------------------------------------------ paired_test.py


def paired_args(ctx):
    return ["--model", ctx.model, "--modes", "all+bm25,colbert,dense", "--datasets", ctx.beir(), "--bootstrap", 300,
            "--out", ctx.report("paired.md")]


def paired_check(ctx, stdout):
    """One row per other mode; the mean difference is the two columns' difference, inside its interval; the
    columns are the nDCG@10 that evaluate() gives those modes on the same collection."""
    text = (ctx.tmp / "paired.md").read_text()
    rows = [c for c in map(cells, text.splitlines()) if len(c) == 9 and c[0] != "dataset" and not c[0].startswith("---")]
    assert [r[1] for r in rows] == ["colbert", "dense"], text
    for r in rows:
        first, other, mean = float(r[3]), float(r[4]), float(r[5])
        low, high = (float(x) for x in r[6].strip("[]").split(", "))
        assert 0 <= first <= 1 and 0 <= other <= 1 and int(r[2]) > 0
        assert mean == pytest.approx(first - other, abs=2e-4) and low <= mean + 1e-4 and mean - 1e-4 <= high
        assert 0 <= float(r[7]) <= 1
        better, worse = map(int, r[8].split(" / "))
        assert better + worse <= int(r[2])
    ctx.monkeypatch.setenv("HSEARCH_CACHE", str(ctx.tmp / "cache"))
    from hsearch.evaluate.beir import evaluate

    got = evaluate(ctx.beir(), ["all+bm25", "colbert", "dense"], model=str(ctx.model))
    assert float(rows[0][3]) == pytest.approx(got["all+bm25"]["nDCG@10"], abs=1e-4)
    assert [float(r[4]) for r in rows] == pytest.approx([got["colbert"]["nDCG@10"], got["dense"]["nDCG@10"]], abs=1e-4)


# ------------------------------------------------------------------------------ compare_checkouts.py


def compare_args(ctx):
    """bench_engine's synthetic collection, small, and two checkouts: this one and a copy of its package."""
    import shutil
    import sys as _sys

    _sys.path.insert(0, str(BENCH))
    from harness.synthetic import make_corpus

    from hsearch.config import CollectionConfig

    texts = make_corpus(2000, seed=0)[0]
    enc = FakeEncoder(dim=384, colbert_dim=128, colbert_tokens=48, rank=48, seed=0)
    col = open_collection(ctx.tmp / "syn", create=True, encoder=enc,
                          config=CollectionConfig(model=enc.spec.name, chunk_tokens=256, chunk_overlap=0))
    col.add([{"id": f"s{i:07d}", "text": t} for i, t in enumerate(texts)])
    copy = ctx.tmp / "copy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "hsearch", copy / "hsearch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return ["--checkouts", f"{Path(__file__).resolve().parents[1]},{copy}", "--collection", ctx.tmp / "syn",
            "--chunks", 2000, "--modes", "sparse,dense+bm25", "--rounds", 2, "--out", ctx.report("compare.md")]


def compare_check(ctx, stdout):
    text = (ctx.tmp / "compare.md").read_text()
    rows = [cells(line) for line in text.splitlines() if line.startswith("| sparse |") or line.startswith("| dense+bm25 |")]
    assert [r[0] for r in rows] == ["sparse", "dense+bm25"], text
    for r in rows:
        for cell in r[1:]:  # "a / b: **median**" for each checkout
            runs, median = cell.split(": ")
            values = [float(x) for x in runs.split(" / ")]
            assert len(values) == 2 and all(v > 0 for v in values)
            assert float(median.strip("*")) == pytest.approx(sum(values) / 2, abs=1e-3)


def test_compare_checkouts_times_a_beir_collection_on_its_test_queries(tmp_path, tiny_bgem3):
    """compare_checkouts.py --dataset (the QUICK entry above runs its synthetic path): a collection of a BEIR corpus
    built with the tiny model, timed on that dataset's test queries under two checkouts."""
    import shutil

    beir = small_beir(tmp_path / "beir")
    open_collection(tmp_path / "col", create=True, model=str(tiny_bgem3)).index(str(beir / "corpus.jsonl"))
    copy = tmp_path / "copy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "hsearch", copy / "hsearch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run("compare_checkouts.py", "--checkouts", f"{Path(__file__).resolve().parents[1]},{copy}", "--collection",
        tmp_path / "col", "--dataset", beir, "--modes", "bm25,dense", "--rounds", 1, "--out", tmp_path / "c.md",
        tmp_path=tmp_path)
    text = (tmp_path / "c.md").read_text()
    rows = {cells(line)[0]: cells(line)[1:] for line in text.splitlines() if line.startswith(("| bm25 |", "| dense |"))}
    assert set(rows) == {"bm25", "dense"} and str(tmp_path / "col") in text, text
    for values in rows.values():
        assert len(values) == 2 and all(float(v.split(": ")[1].strip("*")) > 0 for v in values), text


# ------------------------------------------------------------------------------ sparse_ceiling.py


def bm25_rank_bounds(beir, model):
    """Best and worst rank of each query's one relevant document under BM25 (k1 1.2, b 0.75) over the
    model tokenizer's pieces, computed here from the definition: IDF log(1 + (N - df + 0.5) / (df + 0.5)),
    document length without <s> and </s>, the mean length with them (as sparse_ceiling.py counts it),
    a query's distinct pieces weighted 1. Ties give a range of ranks."""
    from collections import Counter

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    special = set(tok.all_special_ids)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    pieces = [tok(d["text"])["input_ids"] for d in docs]
    n, avg = len(pieces), sum(map(len, pieces)) / len(pieces)
    df = Counter(t for p in pieces for t in set(p))
    weights = []
    for p in pieces:
        body = [t for t in p if t not in special]
        norm = 1.2 * (1 - 0.75 + 0.75 * len(body) / avg)
        weights.append({t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * c * 2.2 / (c + norm)
                        for t, c in Counter(body).items()})
    ids = [d["_id"] for d in docs]
    bounds = {}
    for line in (beir / "queries.jsonl").read_text().splitlines():
        q = json.loads(line)
        terms = set(tok(q["text"])["input_ids"]) - special
        s = [sum(w.get(t, 0.0) for t in terms) for w in weights]
        rel = s[ids.index("d" + q["_id"][1:])]
        bounds[q["_id"]] = (1 + sum(x > rel + 1e-5 for x in s), sum(x >= rel - 1e-5 for x in s))
    return bounds


def ceiling_args(ctx):
    return ["--model", ctx.model, "--datasets", pieces_beir(ctx.tmp / "pieces"), "--out", ctx.report("ceiling.md")]


def ceiling_check(ctx, stdout):
    (row,) = [cells(line) for line in (ctx.tmp / "ceiling.md").read_text().splitlines()
              if "| bm25-on-pieces: sparse |" in line]
    ndcg, recall, mrr = map(float, row[2:5])
    bounds = bm25_rank_bounds(ctx.tmp / "pieces", ctx.model)
    worst_best = [[sum(f(r) for r in ranks) / len(bounds) for ranks in zip(*bounds.values())]
                  for f in (lambda r: 1 / math.log2(r + 1) if r <= 10 else 0.0, lambda r: 1 / r if r <= 10 else 0.0)]
    (ndcg_best, ndcg_worst), (mrr_best, mrr_worst) = worst_best
    assert ndcg_worst - 1e-4 <= ndcg <= ndcg_best + 1e-4 and mrr_worst - 1e-4 <= mrr <= mrr_best + 1e-4, \
        (ndcg, ndcg_best, ndcg_worst, mrr, mrr_best, mrr_worst)
    assert ndcg_best - ndcg_worst < 0.05  # few ties: the bounds pin the value
    assert recall == 1.0  # every document shares pieces with every query ("the", "."): all are retrieved


# ------------------------------------------------------------------------------ bench_qdrant_backend.py
# Run in process with the fake encoder (distinct dense and multi-vector scores; every document is a
# candidate, so sparse ties cannot change the union): the tiny random model's dense scores differ by less
# than float32 rounding, where two engines may order them either way.


def word_encoder():
    return FakeEncoder(dim=16, colbert_dim=16, name="word-hash-test")


def qdrant_args(ctx):
    beir = pieces_beir(ctx.tmp / "pieces")
    col = open_collection(ctx.tmp / "local", create=True, encoder=word_encoder(),
                          config=CollectionConfig(colbert_codec="float32"))
    col.index(beir / "corpus.jsonl")
    return ["--collection", ctx.tmp / "local", "--dataset", beir, "--work", ctx.tmp / "work", "--warmup", "1",
            "--out", ctx.report("qdrant.md")]


def qdrant_in_process(ctx, argv):
    sys.path.insert(0, str(BENCH))
    import bench_qdrant_backend

    ctx.monkeypatch.setattr(bench_qdrant_backend, "open_collection",
                            lambda folder, **kw: open_collection(folder, encoder=word_encoder(), **kw))
    bench_qdrant_backend.main(argv)
    return ""


def qdrant_check(ctx, stdout):
    """Both qdrant-edge copies return the local engine's documents, scores and quality in every mode
    (the script's own agreement columns say so)."""
    rows = [cells(line) for line in (ctx.tmp / "qdrant.md").read_text().splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    by_mode = {}
    for mode, system, ndcg, recall, *_, same, ties, diff in rows:
        by_mode.setdefault(mode, {})[system] = (float(ndcg), float(recall), float(same), float(ties), float(diff))
    assert list(by_mode) == ["dense", "sparse", "dense+sparse", "dense+sparse/rrf", "all", "colbert", "dense+sparse+bm25"]
    assert len({systems["local"][0] for systems in by_mode.values()}) > 3  # the modes differ: the data can tell
    for mode, systems in by_mode.items():
        assert set(systems) == {"local", "qdrant-edge", "qdrant-edge+local-tokens"}, mode
        local = systems["local"]
        assert local[2:] == (1.0, 1.0, 0.0)
        for name, got in systems.items():
            assert got[:2] == local[:2], (mode, name)  # nDCG@10 and Recall@100
            assert got[3] == 1.0 and got[4] < 1e-5, (mode, name)  # the same top-10 up to ties, scores to float32


# ------------------------------------------------------------------------------ bench_ray.py


def ray_check(ctx, stdout):
    text = (ctx.tmp / "ray.md").read_text()
    assert "Bit-identical: **True**" in text and "bench_ray.py --quick" in text


# ------------------------------------------------------------------------------ bench_serve.py


def serve_check(ctx, stdout):
    """4 query clients beside an HTTP writer and an `hsearch index` run (another process) on a tiny model built
    in the run: no failed request or write, no lost, duplicated or resurrected document, the live counts are
    the counts before plus what was acknowledged (and the counts before again after the bench's cleanup);
    rates and latencies are numbers, the ratio column their ratio."""
    text = (ctx.tmp / "serve.md").read_text()
    rows = [cells(line) for line in text.splitlines() if line.startswith("| ") and not line.startswith("| clients")
            and not line.startswith(("| writes", "| live"))]
    single, loaded, http, index, docs, chunks = rows
    assert single[0] == "1" and loaded[0] == "4 (+1 writer, +1 index run)"
    for row in (single, loaded):
        requests, failed, qps, p50, p95 = int(row[2]), int(row[3]), float(row[4]), float(row[5]), float(row[6])
        assert requests > 0 and failed == 0 and qps > 0 and 0 < p50 <= p95
    # the ratio column is the two rates' ratio, up to their printed rounding (0.1 q/s) and its own (0.01)
    q1, q = float(single[4]), float(loaded[4])
    assert (q - 0.05) / (q1 + 0.05) - 0.005 <= float(loaded[7]) <= (q + 0.05) / max(q1 - 0.05, 1e-9) + 0.005
    added, replaced, deleted = map(int, http[1].split(" / "))
    assert added >= 1 and http[2:] and int(http[2]) == 0 and 0 < float(http[3]) <= float(http[4])
    assert [int(x) for x in http[5:]] == [0, 0, 0, 0]  # not visible at once, lost, duplicated, resurrected
    assert index[0].startswith("`hsearch index` run, 20 documents, ") and int(index[1]) == 20 and int(index[2]) == 0
    assert int(index[6]) == 0  # lost
    n_chunks = int(re.search(r"(\d+) chunks", index[0]).group(1))
    assert n_chunks >= 20
    before, end, expected, after = map(int, docs[1:])
    assert end == expected == before + added - deleted + 20 and after == before
    before, end, expected, after = map(int, chunks[1:])
    assert end == expected and expected >= before + added - deleted + n_chunks and after == before
    assert "bench_serve.py --quick" in text and "nproc=" in text and "first 5" not in text


# ------------------------------------------------------------------------------ bench_segments.py


def segments_check(ctx, stdout):
    """10 adds of 200 chunks: 10 segments without merging, the policy merges them into 1, optimize keeps
    1 and shrinks the segment bytes; every ratio is its latency over the one-segment row's; recall is 1
    on the flat (exact) index of so few vectors."""
    text = (ctx.tmp / "out" / "segments.md").read_text()
    rows = [cells(line) for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    lat = [r for r in rows if r[1].isdigit() and len(r) == 8]
    assert [r[1] for r in lat] == ["1", "10", "1", "1"]
    ref = [float(c.split()[0]) for c in lat[0][3:]]
    def half_unit(text):  # half the last printed digit of a value: what rounding it for print may have moved it by
        return 0.5 * 10 ** -(len(text.split(".")[1]) if "." in text else 0)

    refs = [c.split()[0] for c in lat[0][3:]]
    for r in lat:
        for c, base, base_text in zip(r[3:], ref, refs):
            ms, ratio = float(c.split()[0]), float(c.split()[1].strip("()x"))
            # the ratio is printed from unrounded latencies; from the printed ones it is known to rounding error
            slack = ms / base * (half_unit(c.split()[0]) / ms + half_unit(base_text) / base) + 0.005
            assert ratio == pytest.approx(ms / base, abs=slack)
    seg = next(r for r in rows if r[0] == "segments")
    assert float(seg[2].split()[0]) < float(seg[1].split()[0])
    rec = [r for r in rows if r[0].isdigit() and len(r) == 4]
    assert [int(r[0]) for r in rec] == [16, 32, 64, 128, 160, 192, 256] and all(r[1] == "flat" and r[2] == "1.000" for r in rec)


# ------------------------------------------------------------------------------ the table

QUICK = {
    "quality.py": Quick(quality_args, quality_check),
    "bm25_analyzers.py": Quick(lambda ctx: ["--quick", "--datasets", ctx.beir(), "--out", ctx.report("bm25.md")],
                               bm25_analyzers_check),
    "bench_colbert_codecs.py": Quick(colbert_codecs_args, colbert_codecs_check),
    "bench_encode.py": Quick(lambda ctx: ["--quick", "--model", ctx.model], encode_check),
    "encode_quality.py": Quick(encode_quality_args, encode_quality_check),
    "bench_engine.py": Quick(engine_args, engine_check),
    "bench_heads.py": Quick(lambda ctx: ["--quick", "--out", ctx.report("report.md")], heads_check),
    "bench_maxsim.py": Quick(lambda ctx: ["--candidates", 20, "--tokens", 16, "--dims", 32, "--nq", 4, "--repeats", 1,
                                          "--codecs", "float32,int8,float16", "--device", "cpu"], maxsim_check),
    "bench_sparse.py": Quick(lambda ctx: ["--docs", 2000, "--vocab", 5000, "--queries", 10, "--repeats", 1, "--any-size"],
                             sparse_check),
    "sweep_sparse_weight.py": Quick(sweep_args, sweep_check),
    "sweep_fusion.py": Quick(fusion_sweep_args, fusion_sweep_check),
    "sweep_coverage.py": Quick(coverage_sweep_args, coverage_sweep_check),
    "compare_checkouts.py": Quick(compare_args, compare_check),
    "paired_test.py": Quick(paired_args, paired_check),
    "sparse_ceiling.py": Quick(ceiling_args, ceiling_check),
    "bench_qdrant_backend.py": Quick(qdrant_args, qdrant_check, needs=(("qdrant_edge", "qdrant-edge is not installed"),),
                                     in_process=qdrant_in_process),
    "bench_serve.py": Quick(lambda ctx: ["--quick", "--out", ctx.report("serve.md"), "--work", ctx.tmp / "work"],
                            serve_check, needs=(("fastapi", "the server extra is not installed"),
                                                ("httpx", "httpx is not installed"))),
    "bench_segments.py": Quick(lambda ctx: ["--quick", "--out", ctx.tmp / "out"], segments_check),
    "bench_ray.py": Quick(lambda ctx: ["--quick", "--out", ctx.report("ray.md"), "--work", ctx.tmp / "work"], ray_check,
                          needs=(("ray.data", "Ray is not installed (not in the test extra: `pip install ray[data]`)"),)),
}
# scripts with a `main` that cannot have a quick variant: name -> why (none today)
NO_QUICK: dict[str, str] = {}


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_variant(script, tmp_path, request, monkeypatch):
    if script in NO_QUICK:
        pytest.skip(f"{script}: {NO_QUICK[script]}")
    assert script in QUICK, f"{script} has a main but no quick variant: add one to QUICK (or say why not in NO_QUICK)"
    quick = QUICK[script]
    for module, why in quick.needs:
        pytest.importorskip(module, reason=why)
    ctx = Ctx(tmp_path, request, monkeypatch)
    argv = [str(x) for x in quick.args(ctx)]
    stdout = quick.in_process(ctx, argv) if quick.in_process else run(script, *argv, tmp_path=tmp_path)
    # every report names the commit its code was measured on
    texts = [stdout] + [p.read_text() for p in ctx.reports if p.exists()] + [p.read_text() for p in (tmp_path / "out").glob("*.md")]
    assert any(re.search(r"^Commit: [0-9a-f]{40}", t, re.M) for t in texts), script
    quick.check(ctx, stdout)


def test_quick_table_names_only_scripts():
    assert set(QUICK) | set(NO_QUICK) <= set(SCRIPTS) and not set(QUICK) & set(NO_QUICK)
    assert {"bench_engine.py", "quality.py", "bench_encode.py", "encode_quality.py"} <= set(SCRIPTS)  # the discovery works


def test_bench_heads_memo_gives_the_encoder_its_own_outputs(tmp_path, tiny_bgem3):
    """The state memo of benchmarks/bench_heads.py: a second encoder reading recorded states encodes
    exactly as the transformer itself would (the benchmark's before/after rows rest on it)."""
    import numpy as np

    sys.path.insert(0, str(BENCH))
    from bench_heads import StateMemo

    from hsearch.encode import load_encoder

    texts = ["the cat sat on the mat", "dogs chase cats in the park every single day", "rain"]
    plain = load_encoder(str(tiny_bgem3)).encode_documents(texts)
    recorder, reader = load_encoder(str(tiny_bgem3)), load_encoder(str(tiny_bgem3))
    memo = StateMemo(tmp_path / "memo", recorder.dim)
    memo.attach(recorder)
    recorder.encode_documents(texts)
    assert (memo.misses, memo.hits) == (3, 0)
    again = StateMemo(tmp_path / "memo", reader.dim)  # reopened from disk
    again.attach(reader)
    reader.model = None  # any transformer call would fail
    got = reader.encode_documents(texts)
    assert (again.misses, again.hits) == (0, 3)
    for a, b in zip(plain, got):
        np.testing.assert_allclose(a.dense, b.dense, rtol=1e-5, atol=1e-6)
        assert a.sparse.keys() == b.sparse.keys()
        np.testing.assert_allclose(list(a.sparse.values()), list(b.sparse.values()), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.colbert, b.colbert, rtol=1e-5, atol=1e-6)
