"""benchmarks/bench_engine.py --quick runs end to end on a small synthetic collection (no model, no
network, no ../shared) and reports hsearch's rows; peers appear only where their packages are installed."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_engine_quick(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_engine.py"), "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = list(out.glob("engine-*.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    for row in ("| hsearch | dense |", "| hsearch | sparse |", "| hsearch | bm25 |", "| hsearch | colbert |",
                "| hsearch | dense+sparse |", "| hsearch | all |", "| hsearch | **total, excluding encoding** |",
                "| hsearch store call | sparse |"):
        assert row in text, row
    assert "### Query latency, excluding query encoding" in text and "nproc=" in text
    assert "bench_engine.py --quick" in text  # the exact command is part of the report


def test_bench_ray_quick(tmp_path):
    """benchmarks/bench_ray.py --quick: the plain and the --ray collection compare bit for bit (needs Ray)."""
    import pytest

    pytest.importorskip("ray.data")
    out = tmp_path / "ray.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ray.py"), "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "Bit-identical: **True**" in text and "bench_ray.py --quick" in text


def test_bench_heads_memo_gives_the_encoder_its_own_outputs(tmp_path, tiny_bgem3):
    """The state memo of benchmarks/bench_heads.py: a second encoder reading recorded states encodes
    exactly as the transformer itself would (the benchmark's before/after rows rest on it)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
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


def test_bench_heads_quick(tmp_path):
    """benchmarks/bench_heads.py --quick: two head sets on one transformer, the second read from the memo."""
    out = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_heads.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for row in ("| toy | before: dense |", "| toy | other: sparse |", "| toy | other: all |"):
        assert row in text, row
    assert re.search(r"toy / other: \d+ s, transformer states 0 computed", text)


def test_bench_serve_quick(tmp_path):
    """benchmarks/bench_serve.py --quick: 4 query clients for 2 s beside a writer, on a tiny model built in the
    run: no failed request, no lost, duplicated or resurrected document; rates and latencies are numbers."""
    import pytest

    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    out = tmp_path / "serve.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    single, loaded, writes = rows
    assert single[0] == "1" and loaded[0] == "4 (+1 writer)"
    for row in (single, loaded):
        requests, failed, qps, p50, p95 = int(row[2]), int(row[3]), float(row[4]), float(row[5]), float(row[6])
        assert requests > 0 and failed == 0 and qps > 0 and 0 < p50 <= p95
    assert float(loaded[7]) == pytest.approx(float(loaded[4]) / float(single[4]), abs=0.01)
    upserts, deletes, failed, invisible, lost, duplicated, resurrected = map(int, writes)
    assert upserts >= 1 and failed == invisible == lost == duplicated == resurrected == 0
    assert "bench_serve.py --quick" in text and "nproc=" in text
