"""Synthetic data for the benchmarks: Zipf-distributed made-up words with topics, and queries made of
a chunk's rarest words (encoded by hsearch.testing.FakeEncoder, the tests' fake encoder)."""
from __future__ import annotations

import numpy as np

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70: pronounceable made-up words


def make_vocab(size: int) -> np.ndarray:
    """`size` distinct made-up words of 2-4 syllables (rank r -> the base-70 digits of r + 70)."""
    n = len(SYLLABLES)
    words = []
    for r in range(size):
        x, parts = r + n, []
        while x:
            x, d = divmod(x, n)
            parts.append(SYLLABLES[d])
        words.append("".join(reversed(parts)))
    return np.array(words, dtype=object)


def make_corpus(n: int, seed: int = 0, vocab_size: int = 50_000, zipf: float = 1.0, words=(40, 120),
                topics: int = 200, topical: float = 0.5):
    """n texts of words[0]..words[1] words. Each text has one of `topics` topics; a word is drawn with
    probability 1 - topical from the global Zipf distribution (rank r ~ 1/(r+1)^zipf: function words)
    and otherwise from its topic's own Zipf distribution over a topic-specific ordering of the
    vocabulary (jargon shared by the texts of a topic). Returns texts, vocab, word ids, offsets, counts."""
    rng = np.random.default_rng(seed)
    vocab = make_vocab(vocab_size)
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1) ** zipf)
    cdf /= cdf[-1]
    lengths = rng.integers(words[0], words[1] + 1, n)
    total = int(lengths.sum())
    word = np.minimum(np.searchsorted(cdf, rng.random(total)), vocab_size - 1).astype(np.int64)
    topic_of = np.repeat(rng.integers(0, topics, n), lengths)
    pick = np.flatnonzero(rng.random(total) < topical)
    orders = np.stack([rng.permutation(vocab_size).astype(np.int32) for _ in range(topics)])
    ranks = np.minimum(np.searchsorted(cdf, rng.random(len(pick))), vocab_size - 1)
    word[pick] = orders[topic_of[pick], ranks]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(vocab[word[offsets[i]:offsets[i + 1]]]) for i in range(n)]
    return texts, vocab, word, offsets, np.bincount(word, minlength=vocab_size)


def make_queries(nq: int, vocab, word, offsets, counts, seed: int = 1, zipf: float = 1.0) -> list[str]:
    """A random chunk's 3 rarest words (by corpus frequency) plus 2 words of the global Zipf distribution."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1) ** zipf)
    cdf /= cdf[-1]
    out = []
    for j in rng.integers(0, len(offsets) - 1, nq):
        w = np.unique(word[offsets[j]:offsets[j + 1]])
        rare = w[np.argsort(counts[w], kind="stable")[:3]]
        extra = np.minimum(np.searchsorted(cdf, rng.random(2)), len(vocab) - 1)
        words = list(vocab[np.concatenate([rare, extra])])
        rng.shuffle(words)
        out.append(" ".join(words))
    return out
