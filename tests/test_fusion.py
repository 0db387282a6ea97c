"""Fusion functions: properties (hypothesis) and agreement with the BGE-M3 combined score."""
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


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_weighted_equals_bge_m3_combined_score(data):
    n = data.draw(st.integers(1, 20))
    a, b, c = (data.draw(arrays(np.float64, n, elements=st.floats(-1, 1))) for _ in range(3))
    w = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}
    table = {"dense": a, "sparse": b, "colbert": c}
    np.testing.assert_allclose(weighted(table, w), combine(table, w))


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
