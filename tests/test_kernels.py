"""The shared numpy kernels against their plain references (index-order ties: tests/test_sparse_index.py)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from hsearch.index.kernels import top_k, top_k_reference


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-50, 50)), max_size=30, unique_by=lambda p: p[1]),
       st.integers(0, 35))
def test_top_k_by_id_matches_reference(pairs, k):
    # unsorted, unique ids with many tied scores: the segment source's merge of per-segment top-k lists
    scores = np.array([p[0] for p in pairs], np.float32)
    ids = np.array([p[1] for p in pairs], np.int64)
    np.testing.assert_array_equal(top_k(scores, k, ids), top_k_reference(scores, k, ids))
