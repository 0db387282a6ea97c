"""Oracle tests of the sparse inverted index: everything is checked against a dense brute force.

Weights are dyadic (i/8) in most tests so every float sum is exact in any order: the index and a
BLAS matmul must then agree bit for bit, ties included (ties are frequent with such weights).
The pruned search (MaxScore) is also checked bit for bit against the exhaustive one (`prune=False`)
on Zipf data with continuous weights; `forced_pruning` lowers the size thresholds (and shrinks the
sample and seed sets) so that pruning runs, and fully, on test-sized segments.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hsearch.index.compiled as compiled
import hsearch.index.sparse as sparse_module
from hsearch.errors import CollectionError, InputError
from hsearch.index.kernels import ranges as _ranges, ranges_reference as _ranges_reference
from hsearch.index.kernels import top_k as _top_k, top_k_reference as _top_k_reference
from hsearch.index.sparse import SparseReader, open_sparse, write_sparse

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


@contextlib.contextmanager
def forced_pruning(dense=4):
    """Pruning for any segment and k, with a small sample and few seeds so every step does work;
    `dense` sets which terms use dense columns (0: none, a huge value: all)."""
    with mock.patch.multiple(sparse_module, _PRUNE_MIN_POSTINGS=0, _PRUNE_MIN_POSTINGS_COMPILED=0, _PRUNE_MIN_POSTINGS_PER_DOC=0,
                             _PRUNE_MIN_DOCS=0, _PRUNE_MIN_DOCS_PER_K=0,
                             _PRUNE_MAX_K=10**9, _SAMPLE=4, _SAMPLE_K=1, _SEEDS=2, _SEEDS_K=1, _FINAL=0,
                             _DENSE=dense):
        yield


def numpy_only():
    """Search without the compiled loop (sparse_kernel.py), as where numba does not import."""
    return mock.patch.dict(compiled._STATE, {"enabled": False})


def as_scope(allow):
    from hsearch.backends.base import Scope

    return Scope((), allow, lambda where: np.empty(0, np.int64))


@pytest.mark.parametrize("pruning", ["default", "forced", "numpy"])
@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("n", [0, 1, 17, 1000])
def test_search_and_score_equal_brute_force(segment, n, quantize, pruning):
    ids, docs, r = segment(n, quantize)
    assert len(r) == n
    probe = np.r_[ids, [10**7, -10**7]].astype(np.int64)  # plus ids the segment lacks
    path = {"forced": forced_pruning, "numpy": numpy_only}.get(pruning, contextlib.nullcontext)
    with path():
        for q in make_queries(np.random.default_rng(100 + n)):
            full = brute_scores(docs, q, quantize).astype(np.float32)
            np.testing.assert_array_equal(r.score(q, probe), np.r_[full, 0, 0].astype(np.float32))
            for k in (0, 1, 5, n + 3):
                # a Scope as the engine passes it: the mask of the segment's whole id array, kept
                for allow, ref in ((None, None), (even, even), (as_scope(even), even)):
                    got_ids, got_s = r.search(q, k, allow)
                    want_ids, want_s = brute_search(ids, docs, q, k, quantize, ref)
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
    with forced_pruning():
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
                         "weight_dtype": "uint8" if quantize else "float32", "weights_positive": True}
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
       k=st.integers(0, 15), quantize=st.booleans(), filtered=st.booleans(), seed=st.integers(0, 99),
       loop=st.booleans())
def test_property_search_equals_brute_force(docs, query, k, quantize, filtered, seed, loop):
    ids = np.random.default_rng(seed).permutation(len(docs)).astype(np.int64) * 3 - 5
    allow = even if filtered else None
    with tempfile.TemporaryDirectory() as d, contextlib.nullcontext() if loop else numpy_only():
        write_sparse(Path(d), ids, docs, quantize=quantize)
        r = open_sparse(Path(d))
        got_ids, got_s = r.search(query, k, allow)
        want_ids, want_s = brute_search(ids, docs, query, k, quantize, allow)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_s, want_s)
        full = brute_scores(docs, query, quantize).astype(np.float32)
        np.testing.assert_array_equal(r.score(query, ids), full)
        del r  # release the memory maps before the folder goes


# ---- pruned (MaxScore) search against the exhaustive one, on Zipf data ----

def zipf_docs(rng, n, vocab=3000, terms=30, dyadic=False):
    """n docs of `terms` token draws (duplicates collapse) with Zipf(1) frequencies over a random
    rank -> token map, so a few terms sit in most docs, as in benchmarks/bench_sparse.py."""
    p = 1.0 / np.arange(1, vocab + 1)
    token = rng.permutation(vocab)
    draw = lambda rows, cols: token[rng.choice(vocab, (rows, cols), p=p / p.sum())]  # noqa: E731
    def weights(rows, cols):
        return rng.integers(1, 17, (rows, cols)) / 8 if dyadic else rng.uniform(0.01, 0.4, (rows, cols))
    docs = [dict(zip(t, w)) for t, w in zip(draw(n, terms).tolist(), weights(n, terms).tolist())]
    queries = [dict(zip(t, w)) for t, w in zip(draw(12, 12).tolist(), weights(12, 12).tolist())]
    queries += [{}, {vocab + 5: 1.0}, {**queries[0], vocab + 9: 0.3}]  # empty, absent, partly absent
    ids = rng.choice(10**6, n, replace=False).astype(np.int64) - 500_000
    return ids, docs, queries


def sparse_allow(ids):
    return ids % 7 == 3


def assert_same_top_k(r, q, k, allow):
    want_ids, want_s = r.search(q, k, allow, prune=False)
    got_ids, got_s = r.search(q, k, allow)
    assert got_ids.dtype == np.int64 and got_s.dtype == np.float32
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_s, want_s)
    return got_ids, got_s


class PrunedSpy:
    """Counts the searches the pruned path answered itself (rather than handing back to exhaustive)."""

    def __init__(self):
        self.pruned = self.calls = 0
        inner = SparseReader._search_pruned

        def search_pruned(reader, *args):
            out = inner(reader, *args)
            self.calls += 1
            self.pruned += out is not None
            return out
        self.patch = mock.patch.object(SparseReader, "_search_pruned", search_pruned)


@pytest.mark.parametrize("dense", [0, 4, 10**9])  # no dense columns, frequent terms only, every term
@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_pruned_equals_exhaustive_on_zipf(tmp_path, seed, quantize, dense):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 1500))
    ids, docs, queries = zipf_docs(rng, n, dyadic=seed % 2 == 1)  # dyadic: many exact ties
    write_sparse(tmp_path, ids, docs, quantize=quantize)
    r = open_sparse(tmp_path)
    spy = PrunedSpy()
    with forced_pruning(dense), spy.patch:
        for q in queries:
            for k in (1, 10, 37, n + 5):
                for allow in (None, even, sparse_allow, lambda x: np.zeros(len(x), bool)):
                    assert_same_top_k(r, q, k, allow)
        spy.pruned = spy.calls = 0
        for q in queries[:12]:
            r.search(q, 10)
    assert spy.calls == 12 and spy.pruned >= 10  # the pruned path really answered (no fallback)


@pytest.mark.parametrize("quantize", [False, True])
def test_pruned_equals_brute_force_on_zipf(tmp_path, quantize):
    rng = np.random.default_rng(11)
    ids, docs, queries = zipf_docs(rng, 800, dyadic=True)
    write_sparse(tmp_path, ids, docs, quantize=quantize)
    r = open_sparse(tmp_path)
    with forced_pruning():
        for q in queries:
            for k in (1, 10, 900):
                for allow in (None, even):
                    got = assert_same_top_k(r, q, k, allow)
                    want = brute_search(ids, docs, q, k, quantize, allow)
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("loop", [False, True])
def test_pruning_at_default_thresholds_scores_few_docs(tmp_path, loop):
    """Benchmark-like density at 30k docs: the default knobs prune most queries, and those score
    only a small fraction of their hits exactly, with the same top-10 as exhaustive scoring. With the
    compiled loop at hand pruning starts from more postings; without it (no numba), from fewer."""
    rng = np.random.default_rng(3)
    ids, docs, queries = zipf_docs(rng, 30_000, vocab=30_000, terms=60)
    write_sparse(tmp_path, ids, docs)
    r = open_sparse(tmp_path)
    exact = []
    inner = SparseReader._exact

    def spy(reader, pos, qt, qw):
        exact.append(len(pos))
        return inner(reader, pos, qt, qw)
    pruned = 0
    with mock.patch.object(SparseReader, "_exact", spy), \
            contextlib.nullcontext() if loop else numpy_only():
        for q in queries[:12]:
            exact.clear()
            assert_same_top_k(r, q, 10, None)
            if exact:  # the pruned path ran (the exhaustive one never scores through the forward index)
                pruned += 1
                hits = len(r.search(q, len(r), prune=False)[0])
                assert sum(exact) < hits / 20
    assert pruned >= (3 if loop else 6)  # with the loop, only the queries of >= 80k postings prune (5 of these 12)


def test_pruning_falls_back_on_odd_query_weights(tmp_path):
    rng = np.random.default_rng(5)
    ids, docs, queries = zipf_docs(rng, 500)
    write_sparse(tmp_path, ids, docs)
    r = open_sparse(tmp_path)
    with forced_pruning():
        for q in queries[:4]:
            t = next(iter(q), None)
            for w in (0.0, -0.5, 1e-320, 1e38):  # zero, negative, subnormal, near float32's max
                if t is not None:
                    assert_same_top_k(r, {**q, t: w}, 10, None)


def test_old_segment_without_term_max(tmp_path):
    rng = np.random.default_rng(8)
    ids, docs, queries = zipf_docs(rng, 600)
    for quantize in (False, True):
        folder = tmp_path / f"q{quantize}"
        write_sparse(folder, ids, docs, quantize=quantize)
        stored = np.load(folder / "term_max.npy")
        (folder / "term_max.npy").unlink()  # as written before term_max existed
        r = open_sparse(folder)
        with forced_pruning():
            for q in queries:
                assert_same_top_k(r, q, 10, even)
        np.testing.assert_array_equal(r.term_max, stored)
        assert r.term_max.dtype == r.post_weights.dtype
        for i in range(0, len(r.terms), 97):
            assert stored[i] == r.post_weights[r.term_ptr[i]:r.term_ptr[i + 1]].max()


def test_open_rejects_term_max_of_wrong_length(tmp_path):
    write_sparse(tmp_path, np.array([1, 2]), [{1: 1.0}, {2: 0.5}])
    np.save(tmp_path / "term_max.npy", np.ones(5, np.float32))
    with pytest.raises(CollectionError):
        SparseReader.open(tmp_path)


skewed_terms = st.integers(0, 24).map(lambda i: i * i // 12)  # low token ids are far more frequent


@settings(max_examples=80, deadline=None)
@given(docs=st.lists(st.dictionaries(skewed_terms, weights, max_size=10), max_size=40),
       query=st.dictionaries(st.integers(0, 60), weights, max_size=8),
       k=st.integers(1, 45), quantize=st.booleans(), filtered=st.booleans(),
       dense=st.sampled_from([0, 4, 10**9]), seed=st.integers(0, 99))
def test_property_pruned_equals_exhaustive_and_brute_force(docs, query, k, quantize, filtered, dense, seed):
    ids = np.random.default_rng(seed).permutation(len(docs)).astype(np.int64) * 3 - 5
    allow = even if filtered else None
    with tempfile.TemporaryDirectory() as d:
        write_sparse(Path(d), ids, docs, quantize=quantize)
        r = open_sparse(Path(d))
        with forced_pruning(dense):
            got_ids, got_s = assert_same_top_k(r, query, k, allow)
        want_ids, want_s = brute_search(ids, docs, query, k, quantize, allow)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_s, want_s)
        del r


@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_compiled_equals_exhaustive_on_zipf(tmp_path, seed, quantize):
    """The compiled loop (the exhaustive path where numba imports) returns NumPy's exhaustive top-k bit for bit:
    the same ids, float32 scores and tie order (dyadic weights tie often), under every filter, in any thread."""
    rng = np.random.default_rng(50 + seed)
    n = int(rng.integers(300, 1500))
    ids, docs, queries = zipf_docs(rng, n, dyadic=seed % 2 == 1)
    write_sparse(tmp_path, ids, docs, quantize=quantize)
    r = open_sparse(tmp_path)
    ran = []
    real = sparse_module._compiled()
    assert real is not None, "numba is a dependency: the compiled loop must import"
    loops = SimpleNamespace(top_k_postings=lambda *a: ran.append(1) or real.top_k_postings(*a),
                            exact_scores=lambda *a: ran.append(2) or real.exact_scores(*a), query_terms=real.query_terms)
    spy = mock.patch.object(sparse_module, "_compiled", lambda: loops)
    some = np.concatenate([ids[rng.permutation(n)[: n // 3]], [-1, ids.max() + 1]])  # with ids it lacks
    with numpy_only():
        rescored = [r.score(q, some) for q in queries]

    def check():
        for q, want in zip(queries, rescored):
            # re-scoring, before q's searches (after them it reads their sums): the compiled sums are NumPy's
            np.testing.assert_array_equal(r.score(q, some), want)
            for k in (1, 10, 37, n + 5):
                for allow in (None, even, sparse_allow, as_scope(sparse_allow), lambda x: np.zeros(len(x), bool)):
                    assert_same_top_k(r, q, k, allow)

    failed = []

    def in_thread():
        try:
            check()
        except BaseException as e:  # an exception in a thread would only be a warning: carried back
            failed.append(e)

    with spy:
        check()
        worker = threading.Thread(target=in_thread)  # its own scratch buffers
        worker.start()
        worker.join()
    if failed:
        raise failed[0]
    assert ran.count(1) >= 2 * 4 * 5 * (len(queries) - 3)  # the empty and absent queries never reach it
    assert ran.count(2) >= 2 * (len(queries) - 3)


def test_rescoring_after_a_search_reads_the_sums_it_left(tmp_path):
    """After a compiled search, `score` for the same query reads the float64 sums the search left for every doc
    its postings touched (0 for the rest) instead of computing them again through the forward index: the same
    float32 bits as computing them, whatever the search's filter; another query is computed afresh."""
    rng = np.random.default_rng(3)
    ids, docs, queries = zipf_docs(rng, 800)
    write_sparse(tmp_path, ids, docs)
    r = open_sparse(tmp_path)
    asked = np.concatenate([ids, [ids.max() + 1]])
    with numpy_only():
        want = [r.score(q, asked) for q in queries]
    calls, real = [], sparse_module.SparseReader._exact
    read = 0
    with mock.patch.object(sparse_module.SparseReader, "_exact", lambda self, *a: calls.append(1) or real(self, *a)):
        for i, q in enumerate(queries):
            for allow in (None, sparse_allow):
                calls.clear()
                r.search(q, 5, allow)
                np.testing.assert_array_equal(r.score(dict(q), asked), want[i])  # an equal query, another dict
                read += not calls
                np.testing.assert_array_equal(r.score(queries[i - 1], asked), want[i - 1])  # another query
    assert read >= 2 * (len(queries) - 3)  # all but the empty and absent queries, which search nothing


def test_a_compiled_search_that_raises_leaves_the_next_ones_right(tmp_path):
    """The compiled loop's per-thread buffers are zeroed lazily by the next search; a search that raises midway
    (MemoryError, an interrupt) must not leave sums behind for the next ones to add to."""
    rng = np.random.default_rng(11)
    ids, docs, queries = zipf_docs(rng, 500)
    write_sparse(tmp_path, ids, docs)
    r = open_sparse(tmp_path)
    real = compiled.loops("sparse_kernel")

    def raising(*a):
        real.top_k_postings(*a)  # the sums are in the buffers ...
        raise MemoryError  # ... and the count of docs to zero never comes back

    loops = SimpleNamespace(top_k_postings=raising, exact_scores=real.exact_scores, query_terms=real.query_terms)
    with mock.patch.object(sparse_module, "_compiled", lambda: loops), pytest.raises(MemoryError):
        r.search(queries[0], 5)
    for q in queries[:6]:
        assert_same_top_k(r, q, 10, None)


def test_weights_that_round_to_zero_are_not_stored(tmp_path):
    """A weight > 0 whose float32 is 0 adds nothing to any score: it is dropped when written, so every stored
    weight is > 0 and meta.json says so (the compiled loop then tells a new doc by its sum, sparse_kernel.py)."""
    write_sparse(tmp_path, np.array([1, 2]), [{5: 1e-50, 6: 0.5}, {5: 0.25}])
    r = open_sparse(tmp_path)
    assert r.meta["weights_positive"] and r.weights_positive and len(r.post_weights) == 2
    assert r.doc(1) == {6: 0.5} and r.search({5: 1.0, 6: 1.0}, 5)[0].tolist() == [1, 2]


@pytest.mark.parametrize("loop", [True, False])
def test_an_older_segment_with_a_zero_weight_finds_each_doc_once(tmp_path, loop):
    """Segments written before weights_positive may store a 0.0 (a float32 rounding): the compiled loop must not
    count a doc twice when its first posting adds 0.0, so such a segment takes the path that reads `seen`."""
    rng = np.random.default_rng(11)
    ids, docs, queries = zipf_docs(rng, 400)
    write_sparse(tmp_path, ids, docs)
    weights = np.load(tmp_path / "post_weights.npy")
    weights[::7] = 0.0  # as an older writer could have stored
    np.save(tmp_path / "post_weights.npy", weights)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["weights_positive"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    r = open_sparse(tmp_path)
    assert not r.weights_positive
    with contextlib.nullcontext() if loop else numpy_only():
        for q in queries:
            got, scores = r.search(q, 50)
            assert len(set(got.tolist())) == len(got) and (scores > 0).all()
            want, want_s = r.search(q, 50, prune=False)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(scores, want_s)
