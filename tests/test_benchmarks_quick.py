"""The benchmark scripts' small variants run end to end (no ../shared, no network), so they cannot rot.

They print measurements, which are not checked here; what is checked is that each script runs and
writes the table it promises.
"""
import json
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


def test_quality_script(tmp_path, beir, tiny_bgem3):
    out = tmp_path / "q.md"
    run("quality.py", "--datasets", beir, "--model", tiny_bgem3, "--modes", "bm25,dense,all", "--out", out,
        tmp_path=tmp_path)
    table = out.read_text()
    assert all(f"| beir | hsearch {m} |" in table for m in ("bm25", "dense", "all"))


def test_colbert_codecs_script(tmp_path, beir, tiny_bgem3):
    col = open_collection(tmp_path / "f32", create=True, model=str(tiny_bgem3),
                          config=CollectionConfig(colbert_codec="float32"))
    col.index(beir / "corpus.jsonl")
    out = tmp_path / "c.md"
    run("bench_colbert_codecs.py", "--collection", tmp_path / "f32", "--dataset", beir, "--codecs", "float32,int8",
        "--latency-queries", 3, "--out", out, tmp_path=tmp_path)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| float32 ") or line.startswith("| int8 ")]
    assert len(rows) == 2 and "(+0.0000)" in rows[0]


def test_encode_script(tmp_path, tiny_bgem3):
    assert "throughput ratio tokens/fixed" in run("bench_encode.py", "--quick", "--model", tiny_bgem3, tmp_path=tmp_path)


def test_maxsim_script(tmp_path):
    out = run("bench_maxsim.py", "--candidates", 20, "--tokens", 16, "--dims", 32, "--nq", 4, "--repeats", 1,
              "--codecs", "int8,float16", "--device", "cpu", tmp_path=tmp_path)
    assert "int8" in out


def test_sparse_script(tmp_path):
    out = run("bench_sparse.py", "--docs", 2000, "--vocab", 5000, "--queries", 10, "--repeats", 1, tmp_path=tmp_path)
    assert "ms" in out
