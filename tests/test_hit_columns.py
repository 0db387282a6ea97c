"""The hits' fields kept beside each segment's vectors (hsearch/storage/hitcols.py): the same hits as
docs.sqlite gives, through merges that drop deleted documents' bytes, and collections whose segments
predate them."""
import shutil

import numpy as np
import pytest

from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
from hsearch.errors import CollectionError
from hsearch.storage import hitcols
from hsearch.testing import FakeEncoder

WORDS = "cat dog bird fish river mountain tree stone cloud rain sun moon bread milk tea book song city".split()
MODES = ("dense", "sparse", "bm25", "dense+sparse", "all")
QUERIES = ["cat river", "moon tea", "zyzzyva", "book song city", "überfluß straße"]


def _enc():
    return FakeEncoder(dim=24, colbert_dim=16, colbert_tokens=None, jitter=0.01, name="hits-test")


def _docs(lo, hi, seed=0):
    rng = np.random.default_rng(seed + lo)
    out = []
    for i in range(lo, hi):
        words = " ".join(rng.choice(WORDS, int(rng.integers(5, 60))))
        doc = {"id": f"d{i}", "text": f"{words}\n\n  straße überfluß {words}", "title": f"Title {i}" if i % 2 else "",
               "year": 2000 + i, "tags": ["a", f"t{i % 3}"]}
        out.append(doc | ({"path": f"docs/{i}.txt"} if i % 3 else {}))  # a document given without a path too
    return out


def _build(folder, commits=3, per=6):
    cfg = CollectionConfig(model="hits-test", chunk_tokens=16, chunk_overlap=4, dense_index="flat")
    col = open_collection(folder, create=True, encoder=_enc(), config=cfg)
    for c in range(commits):
        col.add(_docs(c * per, (c + 1) * per))
    return col


def _hits(col, modes=MODES):
    return {(m, q): [(h.id, h.score, h.chunk, h.snippet, h.title, h.path, h.metadata) for h in col.search(q, m, k=8)]
            for m in modes for q in QUERIES}


def _segments(folder):
    return sorted(p for p in (folder / "segments").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_hits_from_the_columns_equal_those_from_the_document_store(tmp_path):
    col = _build(tmp_path / "c")
    assert all((s / hitcols.FOLDER / "strings.utf8").exists() for s in _segments(tmp_path / "c"))
    got = _hits(col)
    assert any(h[3].startswith("Title") or "straße" in h[3] for hits in got.values() for h in hits)
    assert any(h[4] for hits in got.values() for h in hits) and any(h[4] is None for hits in got.values() for h in hits)
    assert all(h[6]["tags"][0] == "a" and (h[5] is None or h[5].startswith("docs/")) for hits in got.values() for h in hits)
    assert any(h[5] is None for hits in got.values() for h in hits)
    for s in _segments(tmp_path / "c"):  # a collection written before the columns: docs.sqlite serves
        shutil.rmtree(s / hitcols.FOLDER)
    assert _hits(open_collection(tmp_path / "c", encoder=_enc())) == got


def test_optimize_rewrites_the_columns_without_deleted_documents(tmp_path):
    col = _build(tmp_path / "c")
    col.add([{"id": "secret", "text": "zyzzyva unforgettable marker words", "title": "Classified zyzzyva",
              "path": "zyzzyva/secret.txt"}])
    col.add(_docs(2, 4, seed=7))  # updates: their old chunks are tombstoned
    raw = lambda: b"".join(p.read_bytes() for s in _segments(tmp_path / "c") for p in (s / hitcols.FOLDER).iterdir())
    assert b"zyzzyva" in raw() and b"docs/10.txt" in raw()
    col.delete(["secret", "d10"])  # (a segment left all deleted is rewritten at once by the merge policy)
    # (BM25's statistics lose the deleted documents in optimize, so its scores move: tests/test_merge.py)
    modes = [m for m in MODES if "bm25" not in m]
    expected = _hits(col, modes)
    col.optimize()
    assert len(_segments(tmp_path / "c")) == 1 and b"zyzzyva" not in raw() and b"docs/10.txt" not in raw()
    assert _hits(col, modes) == expected == _hits(open_collection(tmp_path / "c", encoder=_enc()), modes)


@pytest.mark.parametrize("commits", [1, 3])
def test_optimize_gives_a_collection_written_before_hit_columns_its_columns(tmp_path, commits):
    col = _build(tmp_path / "c", commits=commits)
    col.delete(["d1"])
    for s in _segments(tmp_path / "c"):
        shutil.rmtree(s / hitcols.FOLDER)
    col = open_collection(tmp_path / "c", encoder=_enc())
    modes = [m for m in MODES if "bm25" not in m]  # (d1 leaves BM25's statistics)
    expected = _hits(col, modes)
    assert col.optimize()["segments"] == [commits, 1]  # one segment too: rewritten for its columns
    assert [(s / hitcols.FOLDER).exists() for s in _segments(tmp_path / "c")] == [True]
    assert _hits(col, modes) == expected and b"docs/1.txt" not in (_segments(tmp_path / "c")[0] / hitcols.FOLDER /
                                                            "strings.utf8").read_bytes()
    assert col.optimize()["merges"] == 0  # nothing left to do


def test_a_policy_merge_writes_columns_for_segments_without_them(tmp_path):
    col = _build(tmp_path / "c", commits=9, per=2)
    shutil.rmtree(_segments(tmp_path / "c")[0] / hitcols.FOLDER)
    col = open_collection(tmp_path / "c", encoder=_enc())
    col.add(_docs(100, 102))  # the tenth segment on level 0: the policy merges them
    assert col.info()["segments"] == 1 and (_segments(tmp_path / "c")[0] / hitcols.FOLDER).exists()
    got = _hits(col)
    shutil.rmtree(_segments(tmp_path / "c")[0] / hitcols.FOLDER)  # the same hits from docs.sqlite
    assert _hits(open_collection(tmp_path / "c", encoder=_enc())) == got


@pytest.mark.parametrize("damage", ["truncate", "offsets"])
def test_damaged_columns_are_refused_with_what_to_do(tmp_path, damage):
    _build(tmp_path / "c", commits=1)
    folder = _segments(tmp_path / "c")[0] / hitcols.FOLDER
    if damage == "truncate":
        data = (folder / "strings.utf8").read_bytes()
        (folder / "strings.utf8").write_bytes(data[:-5])
    else:
        np.save(folder / "offsets.npy", np.load(folder / "offsets.npy")[:-2])
    with pytest.raises(CollectionError, match="damaged.*rebuild the collection"):
        open_collection(tmp_path / "c", encoder=_enc()).search("cat", "dense")
