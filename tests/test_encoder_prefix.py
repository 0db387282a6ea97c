"""An instruction prefix (e5's "query: " / "passage: ") is read by the model but is not content: its
tokens are left out of the sparse weights and the multi-vector rows (they end in the same ":" in both,
so kept, every query would match every document on it). Tiny random XLM-R with e5-style prefixes."""
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hsearch.encode import Encoder, LongContext, load_encoder  # noqa: E402
from hsearch.encode.base import prefix_length  # noqa: E402


@pytest.fixture(scope="module")
def plain(tiny_bgem3):
    return load_encoder(str(tiny_bgem3), device="cpu")


def with_prefixes(plain: Encoder, long_context: str | None = None) -> Encoder:
    spec = replace(plain.spec, query_prefix="query: ", document_prefix="passage: ")
    return Encoder(plain.model, plain.tokenizer, spec, plain.sparse_linear, plain.colbert_linear, device="cpu",
                   long_context=LongContext.parse(long_context) if long_context else None)


def token_ids(enc: Encoder, text: str) -> list[int]:
    return enc.tokenize([text], 10_000)[0][0]


def test_prefix_tokens_are_not_content(plain):
    enc = with_prefixes(plain)
    text = "Cats sleep most of the day."
    ids = token_ids(enc, "query: " + text)
    p = prefix_length(ids, enc._prefixes)
    assert p >= 2 and ids[1:1 + p] == enc._prefixes[0]
    [q] = enc.encode([text], is_query=True)
    hidden, _, _ = enc.hidden_states([ids])
    hidden = hidden.clone()
    # multi-vector: every row but the first position and the prefix's, in order
    with torch.no_grad():
        want = torch.nn.functional.normalize(enc.colbert_linear(hidden[0, 1 + p:]), dim=-1).numpy()
    np.testing.assert_allclose(q.colbert, want, atol=1e-5)
    assert q.n_tokens == len(ids) and q.colbert.shape[0] == len(ids) - 1 - p
    # sparse: the prefix's own tokens are gone unless the text itself has them
    content = set(ids[1 + p:-1])
    assert set(q.sparse) <= content and set(q.sparse) == {t for t in content if q.sparse.get(t, 0) > 0}
    assert set(ids[1:1 + p]) - content and not (set(ids[1:1 + p]) - content) & set(q.sparse)
    # and the same weights as the model gives the text's tokens with the prefix in front
    with torch.no_grad():
        w = torch.relu(enc.sparse_linear(hidden[0])).squeeze(-1).numpy()
    for t, got in q.sparse.items():
        want_w = max(w[i] for i in range(1 + p, len(ids) - 1) if ids[i] == t)
        assert got == pytest.approx(want_w, rel=1e-5, abs=1e-6)


def test_the_texts_own_words_stay(plain):
    enc = with_prefixes(plain)
    text = "passage the day"  # the prefix's word again, as content
    ids = token_ids(enc, "passage: " + text)
    p = prefix_length(ids, enc._prefixes)
    [d] = enc.encode([text])
    assert d.colbert.shape[0] == len(ids) - 1 - p
    again = (set(ids[1:1 + p]) & set(ids[1 + p:-1])) - set(enc._special_ids)
    hidden, _, _ = enc.hidden_states([ids])
    with torch.no_grad():
        w = torch.relu(enc.sparse_linear(hidden.clone()[0])).squeeze(-1).numpy()
    body = {t: max(w[i] for i in range(1 + p, len(ids) - 1) if ids[i] == t) for t in again}
    assert again & set(d.sparse)  # some of them weigh more than zero here
    for t, want in body.items():
        assert d.sparse.get(t, 0.0) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_no_prefix_no_change(plain):
    assert plain._prefixes == []
    text = "Quantum computers use qubits."
    [a] = plain.encode([text])
    assert a.colbert.shape[0] == a.n_tokens - 1


def test_mcls_drops_the_prefix_too(plain):
    """MCLS inserts a [CLS] every 4 tokens here, inside and after the prefix: the prefix's positions move."""
    from hsearch.encode import longctx as lcx

    enc = with_prefixes(plain, f"mcls:{plain.spec.max_length},every=4")
    text = "Cats sleep most of the day."
    ids = token_ids(enc, "query: " + text)
    p = prefix_length(ids, enc._prefixes)
    assert p > 4  # so an inserted [CLS] falls inside the prefix
    [q] = enc.encode([text], is_query=True)
    new, at = lcx.insert_cls(ids, 4)
    text_rows = [i for i in range(1, len(new)) if i not in at]  # the text's tokens and the final one
    content = text_rows[p:]
    hidden, _, _ = enc.hidden_states([new])
    with torch.no_grad():
        h = hidden.clone()[0]
        w = torch.relu(enc.sparse_linear(h)).squeeze(-1).numpy()
        want = torch.nn.functional.normalize(enc.colbert_linear(h[content]), dim=-1).numpy()
    np.testing.assert_allclose(q.colbert, want, atol=1e-5)
    body = {}
    for i in content[:-1]:
        body[new[i]] = max(body.get(new[i], 0.0), float(w[i]))
    want_sparse = {t: v for t, v in body.items() if v > 0 and t not in enc._special_ids}
    assert q.sparse == pytest.approx(want_sparse, rel=1e-5, abs=1e-6)
