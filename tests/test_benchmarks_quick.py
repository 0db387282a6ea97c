"""The benchmark scripts' small variants run end to end (no ../shared, no network), so they cannot rot.

Timings are not checked (they depend on the machine); what is checked is that each script runs, writes
the table it promises, and that the values in it are the right ones where they are determined (bytes per
token of each codec, an exact codec's error, nDCG deltas against the reference, counts) and agree with
each other (ratios against the columns they are computed from).
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hsearch import open_collection
from hsearch.config import CollectionConfig

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args, tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=900, env={**__import__("os").environ, "HSEARCH_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture()
def beir(tmp_path):
    root = tmp_path / "beir"
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


def test_quality_script(tmp_path, beir, tiny_bgem3, monkeypatch):
    out = tmp_path / "q.md"
    run("quality.py", "--datasets", beir, "--model", tiny_bgem3, "--modes", "bm25,dense,all", "--out", out,
        tmp_path=tmp_path)
    rows = {c[1]: c for c in map(cells, out.read_text().splitlines()) if c[0] == "beir"}
    assert {"hsearch bm25", "hsearch dense", "hsearch all"} <= set(rows), rows
    # each row is evaluate()'s result on the same cached collection, printed to 4 decimals
    monkeypatch.setenv("HSEARCH_CACHE", str(tmp_path / "cache"))
    from hsearch.evaluate.beir import evaluate

    got = evaluate(beir, ["bm25", "dense", "all"], model=str(tiny_bgem3))
    assert len(list((tmp_path / "cache" / "eval").iterdir())) == 1  # the script's collection, reused
    for mode, scores in got.items():
        assert [float(x) for x in rows[f"hsearch {mode}"][2:5]] == \
            [round(scores[m], 4) for m in ("nDCG@10", "Recall@100", "MRR@10")], mode
    assert rows["hsearch bm25"][2:5] == ["1.0000"] * 3  # each query's words name its one document


def test_colbert_codecs_script(tmp_path, beir, tiny_bgem3):
    from hsearch.evaluate.beir import evaluate

    col = open_collection(tmp_path / "f32", create=True, model=str(tiny_bgem3),
                          config=CollectionConfig(colbert_codec="float32"))
    col.index(beir / "corpus.jsonl")
    out = tmp_path / "c.md"
    run("bench_colbert_codecs.py", "--collection", tmp_path / "f32", "--dataset", beir,
        "--codecs", "float32,float16,int8", "--latency-queries", 3, "--out", out, tmp_path=tmp_path)
    text = out.read_text()
    rows = {c[0]: c for c in map(cells, text.splitlines()) if c[0] in ("float32", "float16", "int8")}
    assert list(rows) == ["float32", "float16", "int8"], text
    dim = col.encoder.colbert_dim
    # bytes per token: 4 per float32 value, 2 per float16 value, 1 per int8 value + a float16 scale
    assert [float(rows[c][1]) for c in rows] == [4 * dim, 2 * dim, dim + 2]
    tokens = int(re.search(r"; ([\d,]+) token vectors\)", text).group(1).replace(",", ""))
    assert tokens > 60  # every document has several tokens
    # the float32 copy scores as the collection it was copied from; deltas are against it
    ref = evaluate(beir, ["colbert", "all"], collection_dir=tmp_path / "f32")
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


def test_encode_script(tmp_path, tiny_bgem3):
    from hsearch.encode.precision import cpu_has_bf16

    out = run("bench_encode.py", "--quick", "--model", tiny_bgem3, tmp_path=tmp_path)
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
    assert len(cli) == 4 and all(float(r[1]) > 0 for r in cli.values())
    # the ONNX query process never imports torch: it holds far less memory than the torch one
    assert float(cli["hsearch query (auto: onnx fp32)"][2]) < 0.8 * float(cli["hsearch query (HSEARCH_RUNTIME=torch)"][2])


def test_maxsim_script(tmp_path):
    out = run("bench_maxsim.py", "--candidates", 20, "--tokens", 16, "--dims", 32, "--nq", 4, "--repeats", 1,
              "--codecs", "float32,int8,float16", "--device", "cpu", tmp_path=tmp_path)
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


def test_sparse_script(tmp_path):
    out = run("bench_sparse.py", "--docs", 2000, "--vocab", 5000, "--queries", 10, "--repeats", 1, tmp_path=tmp_path)
    docs, per_doc = re.search(r"generated (\d+) docs \(([\d.]+) terms/doc\)", out).groups()
    postings, terms = map(int, re.search(r"\((\d+) postings, (\d+) terms,", out).groups())
    assert int(docs) == 2000 and abs(postings - 2000 * float(per_doc)) <= 2000 * 0.05 and 0 < terms <= 5000
    assert "pruned == exhaustive top-10 on 10/10 queries" in out
    med = {}
    for path, median, hits in re.findall(r"search top-10 +(\w+): median ([\d.]+) ms .*\(([\d.]+) hits/query\)", out):
        med[path] = float(median)
        assert float(hits) == 10.0
    assert set(med) == {"pruned", "exhaustive"} and min(med.values()) > 0
    # the speed-up is exhaustive / pruned, up to the printed rounding (medians to 0.001 ms, ratio to 0.01)
    wall = float(re.search(r"median speed-up of pruning: ([\d.]+)x wall", out).group(1))
    assert wall == pytest.approx(med["exhaustive"] / med["pruned"], rel=0.02, abs=0.006)


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


def test_sweep_sparse_weight_script(tmp_path, tiny_bgem3, monkeypatch):
    a, b = pieces_beir(tmp_path / "a" / "beir"), pieces_beir(tmp_path / "b" / "beir", first=2, last=3)
    out = tmp_path / "sweep.md"
    run("sweep_sparse_weight.py", "--model", tiny_bgem3, "--datasets", f"{a},{b}", "--memo", tmp_path / "memo",
        "--out", out, tmp_path=tmp_path)
    text = out.read_text()
    assert "| signal | a/beir | b/beir | mean |" in text, text
    rows = {c[0]: [float(x) for x in c[1:]] for c in map(cells, text.splitlines()[4:]) if len(c) == 4}
    grid = [f"{m}, sparse={w}" for m in ("dense+sparse", "all") for w in ("0", "0.025", "0.05", "0.1", "0.2", "0.4")]
    assert list(rows) == ["dense", "sparse"] + grid
    for r in rows.values():
        assert all(0 <= x <= 1 for x in r) and r[2] == pytest.approx((r[0] + r[1]) / 2, abs=1e-4)  # the mean column
    assert rows["dense+sparse, sparse=0"] == rows["dense"]  # a zero weight leaves dense alone
    assert len({tuple(v) for v in rows.values()}) > 3  # the signals differ on this data: the sweep can show something
    # the dense and sparse rows are what evaluate() gives on a collection built the ordinary way
    monkeypatch.setenv("HSEARCH_CACHE", str(tmp_path / "cache"))
    from hsearch.evaluate.beir import evaluate

    for col_i, folder in enumerate((a, b)):
        got = evaluate(folder, ["dense", "sparse"], model=str(tiny_bgem3))
        assert [rows["dense"][col_i], rows["sparse"][col_i]] == [round(got[m]["nDCG@10"], 4) for m in ("dense", "sparse")]


def bm25_rank_bounds(beir, model):
    """Best and worst rank of each query's one relevant document under BM25 (k1 1.2, b 0.75) over the
    model tokenizer's pieces, computed here from the definition: IDF log(1 + (N - df + 0.5) / (df + 0.5)),
    document length without <s> and </s>, the mean length with them (as sparse_ceiling.py counts it),
    a query's distinct pieces weighted 1. Ties give a range of ranks."""
    import math
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


def test_sparse_ceiling_script(tmp_path, tiny_bgem3):
    beir = pieces_beir(tmp_path / "beir")
    out = tmp_path / "ceiling.md"
    run("sparse_ceiling.py", "--model", tiny_bgem3, "--datasets", beir, "--out", out, tmp_path=tmp_path)
    (row,) = [cells(line) for line in out.read_text().splitlines() if "| bm25-on-pieces: sparse |" in line]
    ndcg, recall, mrr = map(float, row[2:5])
    bounds = bm25_rank_bounds(beir, tiny_bgem3)
    worst_best = [[sum(f(r) for r in ranks) / len(bounds) for ranks in zip(*bounds.values())]
                  for f in (lambda r: 1 / math.log2(r + 1) if r <= 10 else 0.0, lambda r: 1 / r if r <= 10 else 0.0)]
    (ndcg_best, ndcg_worst), (mrr_best, mrr_worst) = worst_best
    assert ndcg_worst - 1e-4 <= ndcg <= ndcg_best + 1e-4 and mrr_worst - 1e-4 <= mrr <= mrr_best + 1e-4, \
        (ndcg, ndcg_best, ndcg_worst, mrr, mrr_best, mrr_worst)
    assert ndcg_best - ndcg_worst < 0.05  # few ties: the bounds pin the value
    assert recall == 1.0  # every document shares pieces with every query ("the", "."): all are retrieved


def test_qdrant_backend_script(tmp_path, monkeypatch):
    """bench_qdrant_backend.py on a small collection: both qdrant-edge copies return the local engine's
    documents, scores and quality in every mode (the script's own agreement columns say so). Run in
    process with the word encoder (distinct dense and multi-vector scores; every document is a candidate,
    so sparse ties cannot change the union): the tiny random model's dense scores differ by less than
    float32 rounding, where two engines may order them either way."""
    pytest.importorskip("qdrant_edge")
    sys.path.insert(0, str(BENCH))
    import bench_qdrant_backend
    from test_engine import WordEncoder

    beir = pieces_beir(tmp_path / "beir")
    col = open_collection(tmp_path / "local", create=True, encoder=WordEncoder(),
                          config=CollectionConfig(colbert_codec="float32"))
    col.index(beir / "corpus.jsonl")
    monkeypatch.setattr(bench_qdrant_backend, "open_collection",
                        lambda folder, **kw: open_collection(folder, encoder=WordEncoder(), **kw))
    out = tmp_path / "qdrant.md"
    bench_qdrant_backend.main(["--collection", str(tmp_path / "local"), "--dataset", str(beir),
                               "--work", str(tmp_path / "work"), "--warmup", "1", "--out", str(out)])
    rows = [cells(line) for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
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
