"""The shared numpy kernels against their plain references (index-order ties: tests/test_sparse_index.py)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hsearch.index.kernels import symmetric_int8, top_k, top_k_reference


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-50, 50)), max_size=30, unique_by=lambda p: p[1]),
       st.integers(0, 35))
def test_top_k_by_id_matches_reference(pairs, k):
    # unsorted, unique ids with many tied scores: the segment source's merge of per-segment top-k lists
    scores = np.array([p[0] for p in pairs], np.float32)
    ids = np.array([p[1] for p in pairs], np.int64)
    np.testing.assert_array_equal(top_k(scores, k, ids), top_k_reference(scores, k, ids))


def test_symmetric_int8_rows_round_to_their_own_scale():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    x[2] = 0  # a zero row: codes 0, whatever its (tiny) scale
    for bits in (7, 8):
        codes, scale = symmetric_int8(x, bits)
        top = 2 ** (bits - 1) - 1
        assert codes.dtype == np.int8 and scale.dtype == np.float32 and not codes[2].any()
        assert (np.abs(codes).max(1)[[0, 1, 3, 4]] == top).all()  # each row's largest value on the largest code
        assert (np.abs(codes * scale[:, None] - x) <= scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("ids", [np.arange(40, 90), np.array([3, 4, 5, 9, 10, 30]), np.array([7]), np.empty(0, np.int64)])
def test_positions_of_ids_in_a_segment_with_and_without_gaps(ids):
    from hsearch.index.base import Positions

    ids = ids.astype(np.int64)
    find = Positions(ids)
    assert (find.first is not None) == (len(ids) > 0 and ids[-1] - ids[0] == len(ids) - 1)
    asked = np.array([-5, 0, 2, 3, 5, 6, 7, 40, 41, 89, 90, 10**12], np.int64)
    pos, found = find(asked)
    np.testing.assert_array_equal(found, np.isin(asked, ids))
    np.testing.assert_array_equal(ids[pos[found]], asked[found])
    assert pos.dtype == np.int64 and ((pos >= 0) & (pos < max(len(ids), 1))).all()
