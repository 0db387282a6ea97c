"""Split a document into windows of at most `size` tokens with `overlap` tokens shared between
neighbours, cut at token boundaries and mapped back to character spans of the original text."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Chunk:
    text: str
    start: int  # character offsets in the document text
    end: int


def chunk_text(text: str, tokenizer, size: int, overlap: int) -> list[Chunk]:
    """Chunks of `text` of at most `size` tokens (special tokens not counted), neighbours sharing at
    least `overlap` tokens; the last chunk ends at the text's end and is as long as the others."""
    if overlap >= size:
        raise ValueError(f"chunk overlap ({overlap}) must be smaller than the chunk size ({size})")
    # verbose=False: measuring a long text is the point here, not an error; transformers would warn
    # "sequence length is longer than the specified maximum" once per run otherwise.
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    offsets = enc["offset_mapping"]
    if len(offsets) <= size:
        return [Chunk(text, 0, len(text))]
    chunks, s = [], 0
    while True:
        window = offsets[s:s + size]
        # A span cut out of the text may tokenise into more tokens than it covered (a word piece at the
        # cut becomes a word start): shrink it until it fits, or the encoder would drop its last tokens.
        for _ in range(size):
            start, end = window[0][0], window[-1][1]
            over = len(tokenizer(text[start:end], add_special_tokens=False, verbose=False)["input_ids"]) - size
            if over <= 0 or len(window) <= over:
                break
            window = window[:-over]
        chunks.append(Chunk(text[start:end], start, end))
        if s + len(window) >= len(offsets):
            return chunks
        nxt = s + max(1, len(window) - overlap)  # the next window starts `overlap` tokens before this one's end
        # The last window is a full one ending at the document's end, never a stub of a few tokens: a stub's
        # vector is all about those few words, and under MaxP it wins queries it has nothing to do with.
        s = max(s + 1, len(offsets) - size) if nxt + size > len(offsets) else nxt
