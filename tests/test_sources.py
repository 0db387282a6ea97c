"""The planner's source protocol (hsearch/backends/base.py): however the signals are spread over
sources, and in whatever order the sources are asked, `gather` returns what retrieving every
first-stage list and then scoring the whole union would (the BGE-M3 protocol), asking each source for
its own first stage once."""
import itertools

import numpy as np
import pytest

from hsearch.backends.base import Scope
from hsearch.query.execute import gather

N = 200
RNG = np.random.default_rng(3)
TRUTH = {s: RNG.random(N).astype(np.float32) * (RNG.random(N) > 0.3) for s in ("dense", "sparse", "colbert", "bm25")}


class FakeSource:
    """Scores come from TRUTH; retrieval is a top-k over the allowed ids."""

    def __init__(self, signals):
        self.signals = frozenset(signals)
        self.calls = []

    def collect(self, first, depth, score, scope, extra):
        self.calls.append((tuple(first), len(extra)))
        ids = np.arange(N)
        pools = [np.asarray(extra, np.int64)]
        for s in first:
            ok = ids[scope.allow(ids) & (TRUTH[s] > 0)]
            pools.append(ok[np.lexsort((ok, -TRUTH[s][ok]))][:depth])
        found = np.unique(np.concatenate(pools))
        return found, {s: TRUTH[s][found] for s in score}


def brute_force(first, score, depth, allowed):
    pools = []
    for s in first:
        ok = allowed[TRUTH[s][allowed] > 0]
        pools.append(ok[np.lexsort((ok, -TRUTH[s][ok]))][:depth])
    cand = np.unique(np.concatenate(pools))
    return cand, {s: TRUTH[s][cand] for s in score}


SPLITS = [[{"dense", "sparse", "colbert"}, {"bm25"}], [{"bm25"}, {"colbert"}, {"dense", "sparse"}],
          [{"dense"}, {"sparse"}, {"colbert"}, {"bm25"}]]


@pytest.mark.parametrize("split", SPLITS, ids=lambda s: "|".join("+".join(sorted(x)) for x in s))
@pytest.mark.parametrize("first", [("dense",), ("dense", "sparse"), ("dense", "sparse", "bm25")])
def test_gather_equals_retrieve_then_score_in_any_order(split, first):
    score = ("dense", "sparse", "colbert", "bm25")
    allowed = np.arange(N)[np.arange(N) % 3 != 0]
    for order in itertools.permutations(split):
        sources = [FakeSource(s) for s in order]
        scope = Scope((), lambda ids: np.isin(ids, allowed), lambda where: allowed)
        cand, table = gather(sources, {s: None for s in first}, 17, {s: None for s in score}, scope)
        want, want_table = brute_force(first, score, 17, allowed)
        assert np.array_equal(cand, want)
        for s in score:
            assert np.array_equal(table[s], want_table[s])
        for src in sources:  # each first stage is asked for once, then at most one "newcomers" call
            assert sum(1 for f, _ in src.calls if f) == (1 if src.signals & set(first) else 0)
            assert len(src.calls) <= 2


def test_last_source_is_asked_once():
    local, remote = FakeSource({"bm25", "colbert"}), FakeSource({"dense", "sparse"})
    scope = Scope((), lambda ids: np.ones(len(ids), bool), lambda where: np.arange(N))
    gather([local, remote], {"dense": None, "sparse": None, "bm25": None}, 10,
           {"dense": None, "sparse": None, "colbert": None, "bm25": None}, scope)
    assert len(remote.calls) == 1 and remote.calls[0][1] > 0  # BM25's candidates travelled with it


def test_signal_without_a_source_gives_nothing():
    scope = Scope((), lambda ids: np.ones(len(ids), bool), lambda where: np.arange(N))
    cand, table = gather([FakeSource({"bm25"})], {"dense": None}, 10, {"dense": None}, scope)
    assert cand.size == 0 and table == {}


def test_scope_resolves_the_filter_once_and_only_when_asked():
    calls = []
    scope = Scope((("lang", "=", "de"),), lambda ids: ids % 2 == 0, lambda where: calls.append(where) or np.arange(0, N, 3))
    assert calls == []
    assert scope.allow(np.arange(7)).tolist() == [True, False, False, False, False, False, True]
    scope.allow(np.arange(7))
    assert calls == [(("lang", "=", "de"),)]


def test_local_sources_keep_first_stage_scores_only_where_they_equal_rescoring(tmp_path):
    """The local sources keep a sparse or BM25 chunk's first-stage score instead of scoring it again
    (backends/local.py): on a real collection, each equals what scoring the whole union gives, bit for bit."""
    from hsearch.config import CollectionConfig
    from hsearch.engine import open_collection
    from hsearch.testing import FakeEncoder

    words = "cat dog bird fish sleep run river tree stone rain sun moon bread milk tea book song game".split()
    rng = np.random.default_rng(5)
    enc = FakeEncoder(dim=16, colbert_dim=8, colbert_tokens=None, jitter=0.01, name="keep-test")
    col = open_collection(tmp_path / "c", create=True, encoder=enc,
                          config=CollectionConfig(model=enc.spec.name, chunk_tokens=16, chunk_overlap=4))
    for b in range(3):  # three segments
        col.add([{"id": f"d{b}-{i}", "text": " ".join(rng.choice(words, int(rng.integers(3, 30))))} for i in range(60)])
    col.delete(["d0-1", "d1-2"])
    snap = col.snapshot()
    for text in ["cat river", "moon song tea", "bread"]:
        q = enc.encode_queries([text])[0]
        first = {"dense": q.dense, "sparse": q.sparse, "bm25": text}
        score = {**first, "colbert": q.colbert}
        cand, table = gather(snap.sources, first, 25, score, snap.scope())
        assert len(cand) > 25
        for s, query in score.items():
            src = next(x for x in snap.sources if s in x.signals)
            assert np.array_equal(table[s], src.score(s, query, cand)), s
