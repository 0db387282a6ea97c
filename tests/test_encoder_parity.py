"""hsearch's encoder equals FlagEmbedding's BGEM3FlagModel on the same (tiny random) checkpoint."""
import numpy as np
import pytest

FlagEmbedding = pytest.importorskip("FlagEmbedding")

from hsearch.encode import load_encoder  # noqa: E402
from hsearch.query.scoring import colbert_score, combine, sparse_score  # noqa: E402

TEXTS = ["The dog runs in the park.", "Der Hund läuft im Park.", "Paris is the capital of France.",
         "Sparse lexical weights and dense vectors complement each other. " * 3, "Cats.",
         "Quantum computers use qubits and the mitochondria is the powerhouse of the cell."]


@pytest.fixture(scope="module")
def both(tiny_bgem3):
    ref = FlagEmbedding.BGEM3FlagModel(str(tiny_bgem3), use_fp16=False, devices="cpu")
    assert (tiny_bgem3 / "sparse_linear.pt").exists() and (tiny_bgem3 / "colbert_linear.pt").exists(), \
        "FlagEmbedding silently uses random heads without both files; the parity test needs both"
    return load_encoder(str(tiny_bgem3), device="cpu"), ref


def test_encode_matches_flagembedding(both):
    ours, ref = both
    out = ref.encode(TEXTS, batch_size=4, max_length=64, return_dense=True, return_sparse=True,
                     return_colbert_vecs=True)
    mine = ours.encode_documents(TEXTS, max_length=64, token_budget=100)  # small budget: several batches
    for i, enc in enumerate(mine):
        np.testing.assert_allclose(enc.dense, out["dense_vecs"][i], atol=1e-5)
        ref_sparse = {int(k): float(v) for k, v in out["lexical_weights"][i].items()}
        assert enc.sparse.keys() == ref_sparse.keys()
        np.testing.assert_allclose([enc.sparse[k] for k in ref_sparse], list(ref_sparse.values()), atol=1e-5)
        assert enc.colbert.shape == out["colbert_vecs"][i].shape
        np.testing.assert_allclose(enc.colbert, out["colbert_vecs"][i], atol=1e-5)


def test_compute_score_matches_flagembedding(both):
    ours, ref = both
    pairs = [(TEXTS[i], TEXTS[j]) for i in range(3) for j in range(len(TEXTS))]
    weights = [0.4, 0.2, 0.4]
    # batch_size=1: FlagEmbedding's batched colbert score lets zero padding vectors win a max
    ref_scores = ref.compute_score(pairs, batch_size=1, max_query_length=64, max_passage_length=64,
                                   weights_for_different_modes=weights)
    q = ours.encode_queries([p[0] for p in pairs], max_length=64)
    d = ours.encode_documents([p[1] for p in pairs], max_length=64)
    dense = np.array([float(a.dense @ b.dense) for a, b in zip(q, d)])
    sparse = np.array([sparse_score(a.sparse, b.sparse) for a, b in zip(q, d)])
    colb = np.array([colbert_score(a.colbert, b.colbert) for a, b in zip(q, d)])
    np.testing.assert_allclose(dense, ref_scores["dense"], atol=1e-4)
    np.testing.assert_allclose(sparse, ref_scores["sparse"], atol=1e-4)
    np.testing.assert_allclose(colb, ref_scores["colbert"], atol=1e-4)
    np.testing.assert_allclose(combine({"dense": dense, "sparse": sparse}, {"dense": 0.4, "sparse": 0.2}),
                               ref_scores["sparse+dense"], atol=1e-4)
    np.testing.assert_allclose(combine({"dense": dense, "sparse": sparse, "colbert": colb},
                                       {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}),
                               ref_scores["colbert+sparse+dense"], atol=1e-4)
