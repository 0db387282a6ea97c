import os

import pytest

# The suite checks the reference encoder (torch, fp32) everywhere the engine would otherwise pick the fastest
# runtime and precision for this machine: results must not depend on which CPU runs CI. The other runtimes and
# precisions are checked against it in tests/test_runtimes.py, which asks for them explicitly. Set here, not in a
# fixture, so that CLI subprocesses inherit it.
os.environ["HSEARCH_RUNTIME"] = "torch"
os.environ["HSEARCH_PRECISION"] = "fp32"

from tiny_model import build_tiny_bgem3


@pytest.fixture(autouse=True)
def _compiled_loops_back_on():
    """`hsearch query` run in-process (click's CliRunner) turns the stores' compiled loops off for the
    process it runs in, as a one-shot query should: turn them back on for the tests after it."""
    yield
    from hsearch.index.compiled import use_compiled

    use_compiled(True)


@pytest.fixture(scope="session")
def tiny_bgem3(tmp_path_factory):
    """A tiny random BGE-M3-format checkpoint folder (XLM-R + sparse_linear.pt + colbert_linear.pt)."""
    return build_tiny_bgem3(tmp_path_factory.mktemp("tiny-bgem3"))


@pytest.fixture()
def corpus(tmp_path):
    """A small folder with awkward files: nested text, html, jsonl with metadata, binary, non-UTF-8, empty."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("The dog runs in the park every morning.")
    (root / "sub" / "b.md").write_text("# Cats\nCats sleep most of the day and purr.")
    (root / "c.html").write_text("<html><title>Qubits</title><script>var hidden=1</script>"
                                 "<p>Quantum computers use qubits.</p></html>")
    (root / "d.jsonl").write_text(
        '{"_id": "paris", "title": "Paris", "text": "Paris is the capital of France.", "lang": "en", "year": 2020}\n'
        '{"_id": "berlin", "text": "Berlin ist die Hauptstadt von Deutschland.", "lang": "de", "year": 2018}\n')
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me is sweet.".encode("latin-1"))
    (root / "empty.txt").write_text("   \n")
    return root


@pytest.fixture()
def collection(tmp_path, tiny_bgem3, corpus):
    from hsearch.engine import open_collection

    col = open_collection(tmp_path / "col", create=True, model=str(tiny_bgem3))
    col.index(corpus)
    return col
