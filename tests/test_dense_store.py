"""The FAISS store equals brute force (flat), finds most true neighbours (HNSW), honours filters."""
import json

import numpy as np
import pytest

from hsearch.errors import CollectionError
from hsearch.index.dense import DenseReader, write_dense


def _vectors(n, d=24, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n,k", [(0, 5), (1, 1), (17, 5), (17, 40), (300, 10)])
def test_flat_equals_brute_force(tmp_path, n, k):
    x = _vectors(max(n, 1))[:n]
    ids = np.arange(100, 100 + n, dtype=np.int64)
    write_dense(tmp_path, ids, x.reshape(n, 24), "flat")
    r = DenseReader(tmp_path)
    q = _vectors(1, seed=9)[0]
    got_ids, got = r.search(q, k)
    order = np.argsort(-(x @ q), kind="stable")[:k] if n else []
    assert list(got_ids) == list(ids[order])
    allow = lambda i: i % 2 == 0  # noqa: E731
    got_ids, _ = r.search(q, k, allow)
    keep = [j for j in order if ids[j] % 2 == 0] if n else []
    full = [j for j in np.argsort(-(x @ q), kind="stable") if ids[j] % 2 == 0][:k] if n else []
    assert list(got_ids) == list(ids[full]) and len(got_ids) >= len(keep)
    np.testing.assert_allclose(r.score(q, ids[::-1]), (x @ q)[::-1] if n else [], atol=1e-5)
    assert r.score(q, np.array([5, 10_000], dtype=np.int64)).tolist() == [0.0, 0.0]


def test_hnsw_recall(tmp_path):
    x = _vectors(3000, d=32)
    ids = np.arange(3000, dtype=np.int64)
    write_dense(tmp_path, ids, x, "hnsw")
    r = DenseReader(tmp_path)
    qs = _vectors(50, d=32, seed=3)
    recall = np.mean([len(set(r.search(q, 10)[0]) & set(np.argsort(-(x @ q))[:10])) / 10 for q in qs])
    assert recall >= 0.95


def test_ef_search_of_a_query_sets_the_hnsw_effort_and_the_masks_are_computed_once(tmp_path):
    from hsearch.backends.base import Scope

    x = _vectors(4000, d=64, seed=1)  # full-rank random vectors: hard for a graph, so effort shows
    ids = np.arange(4000, dtype=np.int64)
    write_dense(tmp_path, ids, x, "hnsw", hnsw_m=8, ef_construction=40)
    r = DenseReader(tmp_path)
    qs = _vectors(40, d=64, seed=2)
    allowed = ids[ids % 7 != 0]
    exact = [set(allowed[np.argsort(-(x[allowed] @ q))[:10]].tolist()) for q in qs]
    calls = []

    def live(i):
        calls.append(len(i))
        return i % 7 != 0

    base = Scope((), live, lambda w: ids)

    def recall(ef):
        scope = base.with_ef_search(ef)
        found = [r.search(q, 10, scope)[0] for q in qs]
        return np.mean([len(set(f.tolist()) & ex) / 10 for f, ex in zip(found, exact)])

    low, high = recall(10), recall(400)
    assert high > low + 0.1 and high > 0.9
    assert calls == [4000]  # one mask of the segment for 80 searches: kept by the scope (a snapshot's)
    assert all((r.search(q, 10, base.with_ef_search(400))[0] % 7 != 0).all() for q in qs[:5])


@pytest.mark.parametrize("d", [48, 8])
def test_a_chunks_score_does_not_depend_on_its_neighbours(tmp_path, d):
    """Re-scoring (of candidates another signal found) is row by row: a chunk scores the same alone as among
    others, in any order (from 13 dimensions through FAISS's own inner product, below through NumPy's)."""
    x = _vectors(2000, d=d, seed=4)
    ids = np.arange(10, 2010, dtype=np.int64)
    write_dense(tmp_path, ids, x, "hnsw")
    r = DenseReader(tmp_path)
    for q in _vectors(10, d=d, seed=5):
        got_ids, got = r.search(q, 50)
        scored = r.score(q, got_ids)
        np.testing.assert_array_equal([r.score(q, got_ids[i:i + 1])[0] for i in range(len(got_ids))], scored)
        np.testing.assert_array_equal(r.score(q, got_ids[::-1])[::-1], scored)
        np.testing.assert_allclose(scored, x[got_ids - 10] @ q, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dimensions"):  # never read past the query
        r.score(np.ones(7, np.float32), ids[:3])
    meta = json.loads((tmp_path / "dense.json").read_text())
    (tmp_path / "dense.json").write_text(json.dumps({**meta, "count": meta["count"] + 5}))
    with pytest.raises(CollectionError, match="rebuild"):  # nor past the stored rows
        DenseReader(tmp_path)
