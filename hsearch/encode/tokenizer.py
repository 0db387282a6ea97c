"""A tokenizer through `tokenizers` alone, for the path that runs without transformers.

`FastTokenizer` answers the calls hsearch makes of a transformers tokenizer (the encoder, chunking,
`hsearch embed`) and nothing more. It loads the pipeline that the transformers tokenizer really runs,
saved from its backend at export (hsearch/encode/onnx_export.py): transformers v5 rebuilds some
tokenizers from their class, so a model folder's own tokenizer.json can differ from it (XLM-R's
normaliser and pre-tokeniser did). `tests/test_runtimes.py` checks the ids against transformers.
The special tokens' ids are not in tokenizer.json in a form that says which is which: they are taken
from the transformers tokenizer when the ONNX graph is exported and saved beside it.
"""
from __future__ import annotations

from pathlib import Path

# what transformers calls them; the ids come from the exported folder's runtime.json
SPECIAL_NAMES = ("cls", "eos", "sep", "pad", "unk", "bos")


# what the lexicon path takes (beyond it the whole tokenizer is loaded): a query, not a corpus. It costs a
# few ms a call (a small Unigram model is built each time), so a process that keeps encoding (a server, an
# evaluation) switches to the whole tokenizer after LEXICON_CALLS calls (the encoder makes two itself, for its prefixes), or at once through `warm()`.
LEXICON_TEXTS, LEXICON_CHARS, LEXICON_CALLS = 16, 2000, 8


class FastTokenizer:
    def __init__(self, path: Path, special_ids: dict, model_input_names: list[str]):
        from .lexicon import FILES, Lexicon

        self._path, self._full, self._lexicon_calls = path, None, 0
        self._limit = None  # the truncation currently set on the Rust object
        self._lexicon = Lexicon(path.parent) if all((path.parent / f).exists() for f in FILES) else None
        for name in SPECIAL_NAMES:
            setattr(self, f"{name}_token_id", special_ids.get(name))
        self.model_input_names = list(model_input_names)

    @property
    def _tok(self):
        if self._full is None:
            from tokenizers import Tokenizer

            self._full = Tokenizer.from_file(str(self._path))
            self._full.no_padding()
            self._full.no_truncation()
        return self._full

    def warm(self) -> None:
        """Load the whole tokenizer now (a long-lived process: every later call takes the fast path)."""
        self._tok  # noqa: B018 - the property loads it

    def __call__(self, texts, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, return_offsets_mapping: bool = False, verbose: bool = True) -> dict:
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        lex = self._lexicon
        if (lex is not None and self._full is None and self._lexicon_calls < LEXICON_CALLS and not return_offsets_mapping
                and len(batch) <= LEXICON_TEXTS and all(len(t) <= LEXICON_CHARS and lex.handles(t) for t in batch)):
            self._lexicon_calls += 1
            ids = lex.encode(batch, add_special_tokens)
            if not truncation or max_length is None or all(len(x) <= max_length for x in ids):
                return {"input_ids": ids[0] if single else ids}
        self._truncate(max_length if truncation else None)
        encs = self._tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        out = {"input_ids": [e.ids for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return {k: v[0] for k, v in out.items()} if single else out

    def _truncate(self, max_length: int | None) -> None:
        if max_length == self._limit:
            return
        if max_length is None:
            self._tok.no_truncation()
        else:  # transformers' own setting for one sequence: keep the start, specials included in the length
            self._tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
        self._limit = max_length

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tok.num_special_tokens_to_add(pair)

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self._tok.id_to_token(ids)
        return [self._tok.id_to_token(i) for i in ids]
