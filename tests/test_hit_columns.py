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
        out.append({"id": f"d{i}", "text": f"{words}\n\n  straße überfluß {words}", "title": f"Title {i}" if i % 2 else "",
                    "path": f"docs/{i}.txt", "year": 2000 + i, "tags": ["a", f"t{i % 3}"]})
    return out


def _build(folder, commits=3, per=6):
    cfg = CollectionConfig(model="hits-test", chunk_tokens=16, chunk_overlap=4, dense_index="flat")
    col = open_collection(folder, create=True, encoder=_enc(), config=cfg)
    for c in range(commits):
        col.add(_docs(c * per, (c + 1) * per))
    return col


def _hits(col):
    return {(m, q): [(h.id, h.score, h.chunk, h.snippet, h.title, h.path, h.metadata) for h in col.search(q, m, k=8)]
            for m in MODES for q in QUERIES}


def _segments(folder):
    return sorted(p for p in (folder / "segments").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_hits_from_the_columns_equal_those_from_the_document_store(tmp_path):
    col = _build(tmp_path / "c")
    assert all((s / hitcols.FOLDER / "strings.utf8").exists() for s in _segments(tmp_path / "c"))
    got = _hits(col)
    assert any(h[3].startswith("Title") or "straße" in h[3] for hits in got.values() for h in hits)
    assert any(h[4] for hits in got.values() for h in hits) and any(h[4] is None for hits in got.values() for h in hits)
    assert all(h[6]["tags"][0] == "a" and h[5].startswith("docs/") for hits in got.values() for h in hits)
    for s in _segments(tmp_path / "c"):  # a collection written before the columns: docs.sqlite serves
        shutil.rmtree(s / hitcols.FOLDER)
    assert _hits(open_collection(tmp_path / "c", encoder=_enc())) == got


def test_optimize_rewrites_the_columns_without_deleted_documents(tmp_path):
    col = _build(tmp_path / "c")
    col.add([{"id": "secret", "text": "zyzzyva unforgettable marker words", "title": "Classified zyzzyva",
              "path": "zyzzyva/secret.txt"}])
    col.add(_docs(2, 4, seed=7))  # updates: their old chunks are tombstoned
    raw = lambda: b"".join(p.read_bytes() for s in _segments(tmp_path / "c") for p in (s / hitcols.FOLDER).iterdir())
    assert b"zyzzyva" in raw() and b"docs/9.txt" in raw()
    col.delete(["secret", "d9"])  # (a segment left all deleted is rewritten at once by the merge policy)
    expected = _hits(col)
    col.optimize()
    assert len(_segments(tmp_path / "c")) == 1 and b"zyzzyva" not in raw() and b"docs/9.txt" not in raw()
    assert _hits(col) == expected == _hits(open_collection(tmp_path / "c", encoder=_enc()))


def test_a_merge_with_a_segment_without_columns_leaves_them_to_the_document_store(tmp_path):
    col = _build(tmp_path / "c")
    shutil.rmtree(_segments(tmp_path / "c")[0] / hitcols.FOLDER)
    col = open_collection(tmp_path / "c", encoder=_enc())
    expected = _hits(col)
    col.optimize()
    assert [(s / hitcols.FOLDER).exists() for s in _segments(tmp_path / "c")] == [False]
    assert _hits(col) == expected


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
