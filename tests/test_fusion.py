"""Fusion functions: hand-computed values, properties (hypothesis), and the BGE-M3 combined score."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hsearch.query.fusion import normalize, rrf, weighted
from hsearch.query.scoring import combine

scores = arrays(np.float64, st.integers(1, 30), elements=st.floats(-5, 5, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(scores)
def test_single_signal_keeps_order(x):
    for norm in ("none", "minmax", "dbsf"):
        fused = weighted({"dense": x}, {"dense": 0.7}, norm)
        assert np.all(np.diff(fused[np.argsort(x, kind="stable")]) >= -1e-12)


@settings(max_examples=60, deadline=None)
@given(scores)
def test_normalisations_stay_in_unit_interval(x):
    for norm in ("minmax", "dbsf"):
        y = normalize(x, norm)
        assert y.min() >= 0 and y.max() <= 1


def test_weighted_on_hand_computed_values():
    table = {"dense": np.array([0.9, 0.5, 0.1]), "sparse": np.array([0.2, 0.8, 0.0]),
             "colbert": np.array([0.7, 0.6, 0.3])}
    w = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}
    # 0.4*0.9 + 0.2*0.2 + 0.4*0.7 = 0.68; 0.2 + 0.16 + 0.24 = 0.60; 0.04 + 0 + 0.12 = 0.16 (weights sum to 1)
    np.testing.assert_allclose(weighted(table, w), [0.68, 0.60, 0.16])
    # min-max: dense [1, 0.5, 0], sparse [0.25, 1, 0], colbert [1, 0.75, 0]
    np.testing.assert_allclose(weighted(table, w, "minmax"), [0.85, 0.70, 0.0])
    # weights that do not sum to 1 are divided by their sum: (1*1 + 3*0) / 4, (1*0 + 3*1) / 4
    two = {"dense": np.array([1.0, 0.0]), "sparse": np.array([0.0, 1.0])}
    np.testing.assert_allclose(weighted(two, {"dense": 1.0, "sparse": 3.0}), [0.25, 0.75])
    # dbsf of [0, 1]: mean 0.5, sd 0.5, so [-1, 2] maps to [0, 1]: 0 -> 1/3, 1 -> 2/3
    np.testing.assert_allclose(weighted({"dense": np.array([0.0, 1.0])}, {"dense": 2.0}, "dbsf"), [1 / 3, 2 / 3])
    # a signal without a weight counts 0, in the sum and in the divisor; a weight without a signal is ignored
    np.testing.assert_allclose(weighted(two, {"dense": 0.5}), [1.0, 0.0])
    np.testing.assert_allclose(weighted(two, {"dense": 1.0, "sparse": 3.0, "bm25": 4.0}), [0.25, 0.75])
    # BGE-M3's combined score (hsearch/query/scoring.py) gives the same on the same table
    np.testing.assert_allclose(combine(table, w), [0.68, 0.60, 0.16])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_weighted_is_a_convex_combination(data):
    n = data.draw(st.integers(1, 20))
    a, b, c = (data.draw(arrays(np.float64, n, elements=st.floats(-1, 1))) for _ in range(3))
    w = {s: data.draw(st.floats(0.01, 5)) for s in ("dense", "sparse", "colbert")}
    table = {"dense": a, "sparse": b, "colbert": c}
    fused = weighted(table, w)
    stacked = np.stack([a, b, c])
    assert np.all(fused >= stacked.min(0) - 1e-12) and np.all(fused <= stacked.max(0) + 1e-12)
    # the same score in every signal fuses to itself; scaling every weight changes nothing
    np.testing.assert_allclose(weighted({"dense": a, "sparse": a, "colbert": a}, w), a, atol=1e-12)
    np.testing.assert_allclose(weighted(table, {s: 7 * x for s, x in w.items()}), fused, atol=1e-12)
    # raising one signal's score of one candidate raises that candidate's fused score by w_s / sum(w), only it
    i = data.draw(st.integers(0, n - 1))
    up = dict(table, sparse=b + np.eye(n)[i])
    np.testing.assert_allclose(weighted(up, w) - fused, np.eye(n)[i] * w["sparse"] / sum(w.values()), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rrf_is_symmetric_and_rewards_agreement(data):
    n = data.draw(st.integers(2, 20))
    a = data.draw(arrays(np.float64, n, elements=st.floats(-1, 1)))
    b = data.draw(arrays(np.float64, n, elements=st.floats(-1, 1)))
    np.testing.assert_allclose(rrf({"x": a, "y": b}), rrf({"y": b, "x": a}))
    both_first = rrf({"x": np.arange(n, 0, -1.0), "y": np.arange(n, 0, -1.0)})
    assert np.argmax(both_first) == 0 and np.isclose(both_first[0], 2 / 61)


def test_rrf_ties_share_the_better_rank():
    np.testing.assert_allclose(rrf({"x": np.array([1.0, 1.0, 0.0])}, k=0), [1, 1, 1 / 3])
