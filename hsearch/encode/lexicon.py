"""Unigram tokenisation of a few short texts without building the whole vocabulary: a query's fast start.

Loading XLM-R's tokenizer (250,002 Unigram pieces) takes `tokenizers` about half a second: it builds a
trie of every piece, which is most of a cold `hsearch query`. But a Unigram tokenisation is the best
path through a lattice whose nodes are the vocabulary pieces found inside each pre-tokenised word; only
those pieces (and their scores) take part. So for a few short texts this module looks up every
substring of their words in a sorted, memory-mapped table of the pieces, builds a Unigram model of the
pieces found (plus the unknown piece, and the lowest-scoring piece, which sets the unknown-character
penalty), runs the same normaliser and pre-tokeniser through `tokenizers`, and maps the ids back. The
result is the full tokenizer's, token for token (`tests/test_runtimes.py` compares them on texts in
many scripts, and hypothesis-generated ones); texts it does not handle (an added token's text in them,
or a truncation) go to the full tokenizer.

Files (written at export, hsearch/encode/onnx_export.py, beside tokenizer.json):
    lexicon_pieces.npy   the pieces' UTF-8 bytes, sorted, fixed width ('S<max bytes>')
    lexicon_ids.npy      their ids (int32), lexicon_scores.npy their scores (float64)
    lexicon.json         the pipeline without the vocabulary, and unk_id, min_id, max_chars, specials
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsearch.storage import arrays

FILES = ("lexicon_pieces.npy", "lexicon_ids.npy", "lexicon_scores.npy", "lexicon.json")


def write_lexicon(pipeline: dict, folder: Path, with_specials: list[int], without: list[int]) -> bool:
    """Write the lexicon of a tokenizer.json (as a dict) into `folder`; False for a non-Unigram model.
    `with_specials` / `without`: one probe text's ids with and without special tokens (they give the
    ids the post-processor puts before and after a text)."""
    model = pipeline.get("model") or {}
    if model.get("type") != "Unigram" or model.get("byte_fallback") or model.get("unk_id") is None:
        return False
    vocab = model["vocab"]
    raw = [p.encode("utf-8") for p, _ in vocab]
    order = sorted(range(len(vocab)), key=raw.__getitem__)
    width = max(len(r) for r in raw)
    np.save(folder / FILES[0], np.array([raw[i] for i in order], dtype=f"S{width}"))
    np.save(folder / FILES[1], np.array(order, dtype=np.int32))
    np.save(folder / FILES[2], np.array([vocab[i][1] for i in order], dtype=np.float64))
    at = next(i for i in range(len(with_specials) + 1) if with_specials[i:i + len(without)] == without)
    meta = {"pipeline": {k: v for k, v in pipeline.items() if k != "model"},
            "unk_id": int(model["unk_id"]), "min_id": int(np.argmin([s for _, s in vocab])),
            "max_chars": max(len(p) for p, _ in vocab), "before": with_specials[:at],
            "after": with_specials[at + len(without):], "added": [a["content"] for a in pipeline.get("added_tokens", [])]}
    (folder / FILES[3]).write_text(json.dumps(meta))
    return True


class Lexicon:
    """Tokenises short texts through the pieces they contain (see the module docstring)."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.pieces = arrays.load(folder / FILES[0], mmap_mode="r")
        self.ids = arrays.load(folder / FILES[1], mmap_mode="r")
        self.scores = arrays.load(folder / FILES[2], mmap_mode="r")
        meta = json.loads((folder / FILES[3]).read_text())
        self.unk_id, self.min_id, self.max_chars = meta["unk_id"], meta["min_id"], meta["max_chars"]
        self.before, self.after, self.added = meta["before"], meta["after"], meta["added"]
        self._spec = {**meta["pipeline"], "added_tokens": [], "post_processor": None, "truncation": None,
                      "padding": None}
        # the pipeline's normaliser and pre-tokeniser, hosted by a one-piece model
        host = {**self._spec, "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]],
                                        "byte_fallback": False}}
        self._pipe = Tokenizer.from_str(json.dumps(host))
        self._unk_row = int(np.flatnonzero(np.asarray(self.ids) == self.unk_id)[0])
        self._min_row = int(np.flatnonzero(np.asarray(self.ids) == self.min_id)[0])

    def handles(self, text: str) -> bool:
        """False where an added token's text appears: the full tokenizer splits those out first."""
        return not any(a in text for a in self.added)

    def encode(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        from tokenizers import Tokenizer

        norm, pre = self._pipe.normalizer, self._pipe.pre_tokenizer
        found = set()
        for text in texts:
            words = pre.pre_tokenize_str(norm.normalize_str(text) if norm else text) if pre else [(text, None)]
            for word, _ in words:
                n = len(word)
                found.update(word[i:j].encode("utf-8") for i in range(n) for j in range(i + 1, min(n, i + self.max_chars) + 1))
        cand = np.array(sorted(found), dtype=self.pieces.dtype) if found else np.array([], self.pieces.dtype)
        rows = np.minimum(np.searchsorted(self.pieces, cand), len(self.pieces) - 1)
        rows = sorted(set(rows[np.asarray(self.pieces[rows]) == cand].tolist()) | {self._unk_row, self._min_row})
        vocab = [[self.pieces[r].decode("utf-8"), float(self.scores[r])] for r in rows]
        ids = np.asarray(self.ids[rows], dtype=np.int64)
        model = {"type": "Unigram", "unk_id": rows.index(self._unk_row), "vocab": vocab, "byte_fallback": False}
        sub = Tokenizer.from_str(json.dumps({**self._spec, "model": model}))
        out = [ids[e.ids].tolist() for e in sub.encode_batch(texts, add_special_tokens=False)]
        return [self.before + x + self.after for x in out] if add_special_tokens else out
