"""Words as tokens (hashed ids), with the call signature of a Hugging Face tokenizer: what the
writer's chunker needs from an encoder object that brings no transformer (tests of `encoder=`)."""
import re
import zlib


class WordTokenizer:
    def __init__(self, mask: int = 0x7FFFFFFF):
        self.mask = mask  # token ids = crc32 of the lower-cased word & mask

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False, **_):
        words = list(re.finditer(r"\w+", text.lower()))
        out = {"input_ids": [zlib.crc32(m.group().encode()) & self.mask for m in words]}
        if return_offsets_mapping:
            out["offset_mapping"] = [m.span() for m in words]
        return out

    def num_special_tokens_to_add(self):
        return 0
