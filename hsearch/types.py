"""Plain data types shared by every layer (imports nothing from hsearch)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# A chunk belongs to one or both views of its document (bit flags in a segment's views.npy):
# PASSAGE: the model's own window, cut with overlap (MaxP: a document scores as its best passage);
# WHOLE: the document at the long-context target length, encoded by the extended model.
PASSAGE, WHOLE = 1, 2
VIEWS = {"passage": PASSAGE, "whole": WHOLE}
# The signals a query can fuse: the encoder's three outputs and classic BM25 (the planner's modes).
SIGNALS = ("dense", "sparse", "colbert", "bm25")


@dataclass
class Encoded:
    """The three representations of one text, as produced by one encoder pass.

    dense:   (dim,) float32, L2-normalised, or None when the dense head is off.
    sparse:  {token id: weight > 0}, max-pooled over repeats, special tokens and the prefix's dropped.
    colbert: (rows, dim) float32, each row L2-normalised, no padding: every token but the first position
             and an instruction prefix's ("query: ", see `Encoder`).
    """

    dense: np.ndarray | None = None
    sparse: dict[int, float] | None = None
    colbert: np.ndarray | None = None
    n_tokens: int = 0
    truncated_tokens: int = 0


@dataclass
class Hit:
    """One search result: a document with its best chunk."""

    id: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    snippet: str = ""
    path: str | None = None
    title: str | None = None
    chunk: int = 0
    metadata: dict = field(default_factory=dict)
