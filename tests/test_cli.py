"""The CLI end to end on a tiny model: stable JSON shapes, clean errors, non-zero exit codes."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hsearch.cli import main


@pytest.fixture()
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_index_query_json_and_explain(run, tmp_path, tiny_bgem3, corpus):
    col = tmp_path / "col"
    r = run("index", corpus, "--collection", col, "--model", tiny_bgem3, "-q")
    assert r.exit_code == 0 and "6 added" in r.output and "binary" in r.output
    r = run("query", "qubits quantum", "--collection", col, "--mode", "bm25+dense", "--json", "-k", "3")
    hits = json.loads(r.output)
    assert r.exit_code == 0 and len(hits) == 3 and hits[0]["id"] == "c.html"
    assert {"id", "score", "scores", "snippet"} <= set(hits[0]) and set(hits[0]["scores"]) == {"dense", "bm25"}
    r = run("query", "capital", "--collection", col, "--mode", "all", "--explain", "--where", "lang=de")
    assert r.exit_code == 0 and "1. retrieve" in r.output and "berlin" in r.output and "colbert=" in r.output
    r = run("info", "--collection", col)
    assert json.loads(r.output)["documents"] == 6


@pytest.mark.parametrize("args,message", [
    (["query", "dogs", "--mode", "dnse"], "unknown mode 'dnse'"),
    (["query", " ", "--mode", "dense"], "empty query"),
    (["query", "dogs", "--weights", "dense=abc"], "weights must be numbers"),
])
def test_bad_query_input(run, collection, args, message):
    r = CliRunner().invoke(main, args + ["--collection", str(collection.folder)])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_missing_collection_and_corpus(run, tmp_path, tiny_bgem3):
    r = CliRunner().invoke(main, ["query", "x", "--collection", str(tmp_path / "none")])
    assert r.exit_code != 0 and "hsearch index" in r.output
    r = CliRunner().invoke(main, ["index", str(tmp_path / "nope"), "--collection", str(tmp_path / "c"),
                                  "--model", str(tiny_bgem3)])
    assert r.exit_code != 0 and "does not exist" in r.output


def test_index_ray_goes_through_the_facade(tmp_path, tiny_bgem3, corpus):
    # --ray reaches Ray through Collection.encode_on_ray; without Ray installed it says how to get it
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("Ray is installed (tests/test_ray_encode.py runs it)")
    r = CliRunner().invoke(main, ["index", str(corpus), "--collection", str(tmp_path / "c"), "--model",
                                  str(tiny_bgem3), "--ray", "-q"])
    assert r.exit_code != 0 and 'pip install "hsearch[ray]"' in r.output and "Traceback" not in r.output


def test_ray_worker_errors_arrive_unwrapped():
    # a worker's ClusterError reaches the driver inside Ray's exceptions (RayTaskError derives from the
    # cause's class and keeps it in `.cause`); the CLI must print the worker's message, not Ray's traceback
    from hsearch.encode.ray_runner import _worker_error
    from hsearch.errors import ClusterError

    class RayTaskError(ClusterError):
        def __init__(self, cause):
            super().__init__("remote traceback ...")
            self.cause = cause

    mine = ClusterError("give every Ray node the same files")
    outer = RuntimeError("dataset failed")
    outer.__cause__ = RayTaskError(mine)
    assert _worker_error(outer) is mine and _worker_error(RuntimeError("x")) is None


def test_embed_shape(run, tiny_bgem3):
    r = run("embed", "The dog runs.", "Cats sleep.", "--model", tiny_bgem3)
    out = json.loads(r.output)
    assert len(out) == 2 and set(out[0]) == {"dense", "sparse", "colbert"}
    assert len(out[0]["dense"]) == 32 and all(k.isdigit() for k in out[0]["sparse"])
    assert len(out[0]["colbert"][0]) == 32
    r = run("embed", "The dog runs.", "--model", tiny_bgem3, "--tokens", "--query")
    assert not all(k.isdigit() for k in json.loads(r.output)[0]["sparse"])


def test_embed_bad_model_and_empty_text(tmp_path):
    r = CliRunner().invoke(main, ["embed", "hi", "--model", "no-such-model"])
    assert r.exit_code != 0 and "unknown model" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["embed", "  ", "--model", "minilm"])
    assert r.exit_code != 0 and "empty" in r.output


def test_max_chunks_keeps_only_the_leading_window(run, tmp_path, tiny_bgem3):
    """--max-chunks 1 is LongEmbed's truncation baseline: text past the first window is not indexed."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text("alpha beta gamma delta " * 40 + "zanzibar is the hidden word at the end.")
    (docs / "short.txt").write_text("zanzibar appears in this short note.")
    for name, extra in (("all", []), ("first", ["--max-chunks", 1])):
        r = run("index", docs, "--collection", tmp_path / name, "--model", tiny_bgem3, "--chunk-tokens", 32,
                "--chunk-overlap", 0, "-q", *extra)
        assert r.exit_code == 0, r.output
    hits = {n: [h["id"] for h in json.loads(run("query", "zanzibar", "--collection", tmp_path / n, "--mode", "bm25",
                                                 "--json").output)] for n in ("all", "first")}
    assert sorted(hits["all"]) == ["long.txt", "short.txt"] and hits["first"] == ["short.txt"]
    assert run("index", docs, "--collection", tmp_path / "bad", "--model", tiny_bgem3, "--max-chunks", 0).exit_code != 0


def test_one_shot_query_never_imports_numba(collection):
    """`hsearch query` answers one query and exits: it scores sparse in NumPy rather than import numba for the
    compiled loop; a process that goes on querying (the API, a server) uses the loop."""
    folder = str(collection.folder)
    cli = (f"import sys; from hsearch.cli import main; main(['query', 'dog park', '--collection', {folder!r}, '--mode', "
           "'sparse', '--local', '--json'], standalone_mode=False); print('numba' in sys.modules)")
    api = (f"import sys; from hsearch.engine import open_collection; hits = open_collection({folder!r}).search("
           "'dog park', mode='sparse'); print(bool(hits), 'numba' in sys.modules)")
    out = [subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True).stdout.split()
           for c in (cli, api)]
    assert out[0][-1] == "False" and '"id"' in " ".join(out[0])
    assert out[1] == ["True", "True"]
