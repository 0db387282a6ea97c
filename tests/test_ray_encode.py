"""`--ray`: encoding on a local Ray (Ray Data actor pool, Parquet shards) gives the single-process
collection bit for bit. Skipped where Ray is not installed (it is an optional extra: hsearch[ray])."""
import filecmp
import sqlite3

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")

from hsearch.config import CollectionConfig  # noqa: E402
from hsearch.engine import open_collection  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _docs(n):
    rng = np.random.default_rng(0)
    words = "the dog runs in the park cats sleep most of the day quantum computers use qubits paris".split()
    return [{"id": f"d{i}", "text": " ".join(rng.choice(words, int(rng.integers(3, 120)))), "lang": "en"}
            for i in range(n)]


def _files(folder):
    return sorted(p.relative_to(folder) for p in (folder / "segments").rglob("*") if p.is_file())


def test_ray_encoding_is_bit_identical(tmp_path, tiny_bgem3, ray_local):
    from hsearch.encode.ray_runner import attach_ray

    cfg = CollectionConfig(model=str(tiny_bgem3), chunk_tokens=48, chunk_overlap=8, commit_every=60,
                           colbert_codec="float32")
    plain = open_collection(tmp_path / "plain", create=True, model=str(tiny_bgem3), config=cfg)
    plain.add(_docs(120))
    on_ray = open_collection(tmp_path / "ray", create=True, model=str(tiny_bgem3), config=cfg)
    runner = attach_ray(on_ray.encoder, str(tiny_bgem3), "local", workdir=tmp_path / "shards")
    on_ray.add(_docs(120))
    assert runner.calls >= 2  # one Ray Data job per commit, Parquet shards in between
    files = _files(plain.folder)
    assert files == _files(on_ray.folder) and len(files) > 10
    _match, mismatch, errors = filecmp.cmpfiles(plain.folder, on_ray.folder,
                                                [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    rows = [sqlite3.connect(c.folder / "docs.sqlite").execute("select * from chunks order by chunk_id").fetchall()
            for c in (plain, on_ray)]
    assert rows[0] == rows[1]
    for mode in ("dense+sparse", "all"):
        a, b = (c.search("dog park", mode=mode, k=5) for c in (plain, on_ray))
        assert [(h.id, h.score) for h in a] == [(h.id, h.score) for h in b]
