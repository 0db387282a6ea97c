"""benchmarks/bench_engine.py --quick runs end to end on a small synthetic collection (no model, no
network, no ../shared) and reports hsearch's rows; peers appear only where their packages are installed."""
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
