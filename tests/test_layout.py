"""House rules a test can hold: imports point one way, ARCHITECTURE.md names files that exist,
`import hsearch` stays light (no torch at import time)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a layer may import from layers to its right only; nothing imports `testing` (the test doubles)
ORDER = ["testing", "cli", "server", "integrations", "train", "evaluate", "engine", "writer", "merge", "snapshot", "query", "backends", "ingest", "encode", "index", "storage", "hardware",
         "config", "errors", "types"]


def _imported(path: Path, root: Path = ROOT):
    """(line, absolute module name) of every hsearch module that `path` imports: `import hsearch.x`,
    `from hsearch.x import`, relative `from .x import` / `from ..x import` / `from . import x`, at
    module level or inside functions (lazy imports count: they still tie the layers together)."""
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]  # relative imports start from here
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "hsearch")
        elif isinstance(node, ast.ImportFrom):
            base = [] if node.level == 0 else package[:len(package) - (node.level - 1)]
            module = base + (node.module.split(".") if node.module else [])
            if module[:1] == ["hsearch"] and (node.module is None or module == ["hsearch"]):
                # from . import dense / from hsearch import engine: each name may be a module
                yield from ((node.lineno, ".".join(module + [a.name])) for a in node.names)
            elif module[:1] == ["hsearch"]:
                yield node.lineno, ".".join(module)


def _violations(root: Path = ROOT) -> list[str]:
    bad = []
    pkg = root / "hsearch"
    for f in sorted(pkg.rglob("*.py")):
        src = f.relative_to(pkg).parts[0].removesuffix(".py")
        if src not in ORDER:
            continue
        for line, module in _imported(f, root):
            dst = module.split(".")[1]
            if dst in ORDER and dst != src and ORDER.index(dst) < ORDER.index(src):
                bad.append(f"{f.relative_to(root)}:{line} imports {module}")
    return bad


def test_imports_point_one_way():
    bad = _violations()
    assert not bad, bad


def test_layout_sees_relative_and_lazy_imports(tmp_path):
    # the checker itself: relative imports (one package up, or of a sibling) and imports inside a
    # function are found; those pointing up the order are violations
    pkg = tmp_path / "hsearch" / "index"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from ..engine import Collection\nfrom .base import Allow\n"
                 "def g():\n    import hsearch.cli\n    from . import dense\n    from .. import query\n")
    assert sorted(_imported(f, tmp_path)) == [(1, "hsearch.engine"), (2, "hsearch.index.base"), (4, "hsearch.cli"),
                                              (5, "hsearch.index.dense"), (6, "hsearch.query")]
    assert _violations(tmp_path) == ["hsearch/index/x.py:1 imports hsearch.engine",
                                     "hsearch/index/x.py:4 imports hsearch.cli",
                                     "hsearch/index/x.py:6 imports hsearch.query"]


def test_architecture_links_exist():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`((?:hsearch|tests|benchmarks)/[\w/.-]+)`", text))
    assert paths, "ARCHITECTURE.md names no files"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing


def test_import_is_light():
    code = ("import sys, hsearch, hsearch.cli, hsearch.server.client, hsearch.integrations; "
            "print(*(m in sys.modules for m in ('torch', 'transformers', 'fastapi', 'langchain_core', 'llama_index')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # the server's packages load only when `hsearch serve` runs, a framework's only with its adapter
    assert out.split() == ["False"] * 5


def test_engine_import_has_no_torch():
    # a dense-only query must not pay torch's ~1 s import: only MaxSim and the encoder load it
    code = "import sys, hsearch.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


@pytest.mark.parametrize("module,framework,absent", [
    ("hsearch.integrations.langchain", "langchain_core", ("torch", "transformers", "llama_index")),
    ("hsearch.integrations.llamaindex", "llama_index.core", ("torch", "transformers", "langchain_core", "nltk")),
])
def test_each_adapter_imports_its_framework_only(module, framework, absent):
    pytest.importorskip(framework)
    code = f"import sys, {module}; print(*(m in sys.modules for m in {absent!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * len(absent)
