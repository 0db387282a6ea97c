"""House rules a test can hold: imports point one way, ARCHITECTURE.md names files that exist,
`import hsearch` stays light (no torch at import time)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hsearch"
# a layer may import from layers to its right only
ORDER = ["cli", "train", "evaluate", "engine", "writer", "snapshot", "query", "backends", "ingest", "encode", "index", "storage",
         "config", "errors", "types"]


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0].removesuffix(".py") if rel[0] != "__init__.py" else "__init__"


def test_imports_point_one_way():
    bad = []
    for f in PKG.rglob("*.py"):
        src = _layer(f)
        if src not in ORDER:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hsearch."):
                dst = node.module.split(".")[1]
                if dst in ORDER and dst != src and ORDER.index(dst) < ORDER.index(src):
                    bad.append(f"{f.relative_to(ROOT)} imports {node.module}")
    assert not bad, bad


def test_architecture_links_exist():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`((?:hsearch|tests|benchmarks)/[\w/.-]+)`", text))
    assert paths, "ARCHITECTURE.md names no files"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing


def test_import_is_light():
    code = "import sys, hsearch, hsearch.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_engine_import_has_no_torch():
    # a dense-only query must not pay torch's ~1 s import: only MaxSim and the encoder load it
    code = "import sys, hsearch.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
