"""Oracle tests of the sparse inverted index: everything is checked against a dense brute force.

Weights are dyadic (i/8) in most tests so every float sum is exact in any order: the index and a
BLAS matmul must then agree bit for bit, ties included (ties are frequent with such weights).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hsearch.errors import CollectionError, InputError
from hsearch.index.sparse import (SparseReader, _ranges, _ranges_reference, _top_k, _top_k_reference,
                                  open_sparse, write_sparse)

VOCAB = 300


def make_docs(rng, n, vocab=VOCAB, max_terms=40, dyadic=True):
    docs = []
    for _ in range(n):
        t = rng.choice(vocab, rng.integers(0, max_terms + 1), replace=False)
        w = rng.integers(1, 17, len(t)) / 8 if dyadic else rng.uniform(1e-3, 2.0, len(t))
        docs.append(dict(zip(t.tolist(), w.tolist())))
    ids = rng.choice(10**6, n, replace=False).astype(np.int64) - 500_000  # unsorted, some negative
    return ids, docs


def stored(w, quantize):
    return np.ceil(100 * np.float64(w)) if quantize else np.float64(np.float32(w))


def brute_scores(docs, query, quantize):
    """Dense doc x vocab matrix times the query vector (float64); query terms past the vocab add 0."""
    v = 1 + max([t for d in docs for t in d] + [0])
    m = np.zeros((len(docs), v))
    for i, d in enumerate(docs):
        for t, w in d.items():
            m[i, t] = stored(w, quantize)
    q = np.zeros(v)
    for t, w in query.items():
        if t < v:
            q[t] = w
    s = m @ q
    return s / 100 if quantize else s


def brute_search(ids, docs, query, k, quantize, allow=None):
    s = brute_scores(docs, query, quantize)
    keep = s > 0
    if allow is not None:
        keep &= allow(ids)
    cand = np.flatnonzero(keep)
    s32 = s[cand].astype(np.float32)
    order = sorted(range(len(cand)), key=lambda i: (-s32[i], ids[cand[i]]))[:max(k, 0)]
    return ids[cand[order]], s32[order]


def even(ids):
    return ids % 2 == 0


def make_queries(rng, vocab=VOCAB):
    qs = [{}, {vocab + 7: 1.0, 10**9: 0.5}]  # empty; only terms no doc has
    for n in (1, 3, 12):
        t = rng.choice(vocab + 20, n, replace=False)  # some terms absent from the vocabulary
        qs.append(dict(zip(t.tolist(), (rng.integers(1, 17, n) / 8).tolist())))
    return qs


_SEGMENTS = {}


@pytest.fixture(scope="module")
def segment(tmp_path_factory):
    def get(n, quantize):
        if (n, quantize) not in _SEGMENTS:
            ids, docs = make_docs(np.random.default_rng(n), n)
            folder = tmp_path_factory.mktemp(f"seg{n}{quantize}")
            write_sparse(folder, ids, docs, quantize=quantize)
            _SEGMENTS[n, quantize] = ids, docs, SparseReader.open(folder)
        return _SEGMENTS[n, quantize]
    return get


@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("n", [0, 1, 17, 1000])
def test_search_and_score_equal_brute_force(segment, n, quantize):
    ids, docs, r = segment(n, quantize)
    assert len(r) == n
    probe = np.r_[ids, [10**7, -10**7]].astype(np.int64)  # plus ids the segment lacks
    for q in make_queries(np.random.default_rng(100 + n)):
        full = brute_scores(docs, q, quantize).astype(np.float32)
        np.testing.assert_array_equal(r.score(q, probe), np.r_[full, 0, 0].astype(np.float32))
        for k in (0, 1, 5, n + 3):
            for allow in (None, even):
                got_ids, got_s = r.search(q, k, allow)
                want_ids, want_s = brute_search(ids, docs, q, k, quantize, allow)
                assert got_ids.dtype == np.int64 and got_s.dtype == np.float32
                np.testing.assert_array_equal(got_ids, want_ids)
                np.testing.assert_array_equal(got_s, want_s)


def test_continuous_weights_close_to_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    ids, docs = make_docs(rng, 500, dyadic=False)
    write_sparse(tmp_path, ids, docs)
    r = open_sparse(tmp_path)
    for _ in range(5):
        t = rng.choice(VOCAB, 10, replace=False)
        q = dict(zip(t.tolist(), rng.uniform(0.01, 1, 10).tolist()))
        s = brute_scores(docs, q, False)
        got_ids, got_s = r.search(q, 10)
        pos = {int(i): j for j, i in enumerate(ids)}
        np.testing.assert_allclose(got_s, s[[pos[int(i)] for i in got_ids]], rtol=1e-6)
        assert np.all(np.diff(got_s) <= 0)
        assert got_s[-1] >= np.sort(s)[-10] * (1 - 1e-6)
        np.testing.assert_array_equal(r.score(q, got_ids), got_s)  # same summation order: bitwise


def test_search_reads_only_query_postings(segment):
    ids, docs, r = segment(1000, False)
    q = {int(r.terms[3]): 1.0, int(r.terms[40]): 0.5}
    want = r.search(q, 20)
    poisoned = np.full(len(r.post_docs), -1, np.int32)  # bincount raises on any -1 it is fed
    for i in (3, 40):
        a, b = r.term_ptr[i], r.term_ptr[i + 1]
        poisoned[a:b] = r.post_docs[a:b]
    clone = SparseReader(r.meta, {n: getattr(r, n) for n in
                                  ("ids", "terms", "term_ptr", "post_weights", "doc_ptr", "doc_terms", "doc_weights")}
                         | {"post_docs": poisoned})
    for got, exp in zip(clone.search(q, 20), want):
        np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("quantize", [False, True])
def test_round_trip(tmp_path, quantize):
    ids, docs = make_docs(np.random.default_rng(3), 50)
    docs[4] = {}
    docs[5] = {1: 0.0, 2: 0.25}  # zero weight is dropped
    write_sparse(tmp_path, ids, docs, quantize=quantize)
    meta = json.loads((tmp_path / "meta.json").read_text())
    n_post = sum(1 for d in docs for w in d.values() if w > 0)
    assert meta == {"format": "hsearch.sparse", "version": 1, "n_docs": 50,
                         "n_terms": len({t for d in docs for t, w in d.items() if w > 0}),
                         "n_postings": n_post, "quantize": quantize, "scale": 100 if quantize else 1,
                         "weight_dtype": "uint8" if quantize else "float32"}
    r = SparseReader.open(tmp_path)
    assert isinstance(r.post_docs, np.memmap) and isinstance(r.doc_weights, np.memmap)
    assert np.all(np.diff(r.ids) > 0) and np.all(np.diff(r.terms) > 0)
    for i, d in zip(ids, docs):
        want = {t: stored(w, quantize) / (100 if quantize else 1) for t, w in d.items() if w > 0}
        assert r.doc(int(i)) == want
    assert r.doc(10**9) == {}


def test_empty_segments(tmp_path):
    write_sparse(tmp_path / "a", np.empty(0, np.int64), [])
    write_sparse(tmp_path / "b", np.array([5, 3]), [{}, {}], quantize=True)
    for name in "ab":
        r = open_sparse(tmp_path / name)
        ids, s = r.search({1: 1.0}, 10)
        assert len(ids) == 0 and ids.dtype == np.int64 and s.dtype == np.float32
        np.testing.assert_array_equal(r.score({1: 1.0}, np.array([3, 5])), [0, 0])
    assert len(open_sparse(tmp_path / "a")) == 0 and len(open_sparse(tmp_path / "b")) == 2


def test_quantised_dtype_grows(tmp_path):
    write_sparse(tmp_path, np.array([1]), [{1: 3.0}], quantize=True)
    r = open_sparse(tmp_path)
    assert r.post_weights.dtype == np.uint16
    np.testing.assert_array_equal(r.score({1: 2.0}, np.array([1])), [6.0])


@pytest.mark.parametrize("ids, docs, quantize", [
    ([1, 2], [{1: 1.0}], False),            # length mismatch
    ([1, 1], [{1: 1.0}, {2: 1.0}], False),  # duplicate id
    ([1], [{1: -1.0}], False),              # negative weight
    ([1], [{1: float("nan")}], False),      # non-finite weight
    ([1], [{-3: 1.0}], False),              # negative token id
    ([1], [{2**31: 1.0}], False),           # token id too large
    ([1], [{1: 1000.0}], True),             # does not fit uint16 after quantising
])
def test_write_rejects_bad_input(tmp_path, ids, docs, quantize):
    with pytest.raises(InputError):
        write_sparse(tmp_path, np.array(ids, np.int64), docs, quantize=quantize)


def test_open_rejects_missing_or_foreign(tmp_path):
    with pytest.raises(CollectionError):
        SparseReader.open(tmp_path / "nope")
    write_sparse(tmp_path, np.array([1]), [{1: 1.0}])
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(CollectionError):
        SparseReader.open(tmp_path)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 2**31 - 1)), min_size=0, max_size=20))
def test_ranges_matches_reference(pairs):
    starts = np.array([a for a, _ in pairs], np.int64)
    ends = starts + np.array([b % 7 for _, b in pairs], np.int64)
    np.testing.assert_array_equal(_ranges(starts, ends), _ranges_reference(starts, ends))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=30), st.integers(1, 35))  # search handles k <= 0 itself
def test_top_k_matches_reference(values, k):
    scores = np.array(values, np.float32)
    np.testing.assert_array_equal(_top_k(scores, k), _top_k_reference(scores, k))


weights = st.integers(1, 16).map(lambda i: i / 8)


@settings(max_examples=60, deadline=None)
@given(docs=st.lists(st.dictionaries(st.integers(0, 30), weights, max_size=8), max_size=12),
       query=st.dictionaries(st.integers(0, 40), weights, max_size=6),
       k=st.integers(0, 15), quantize=st.booleans(), filtered=st.booleans(), seed=st.integers(0, 99))
def test_property_search_equals_brute_force(docs, query, k, quantize, filtered, seed):
    ids = np.random.default_rng(seed).permutation(len(docs)).astype(np.int64) * 3 - 5
    allow = even if filtered else None
    with tempfile.TemporaryDirectory() as d:
        write_sparse(Path(d), ids, docs, quantize=quantize)
        r = open_sparse(Path(d))
        got_ids, got_s = r.search(query, k, allow)
        want_ids, want_s = brute_search(ids, docs, query, k, quantize, allow)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_s, want_s)
        full = brute_scores(docs, query, quantize).astype(np.float32)
        np.testing.assert_array_equal(r.score(query, ids), full)
        del r  # release the memory maps before the folder goes
