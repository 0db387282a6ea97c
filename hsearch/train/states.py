"""Token states of the training texts under a frozen backbone, computed once and kept on disk.

With the backbone frozen only the heads learn, so every epoch would recompute the same transformer
pass: caching the last hidden states (float16, one memory-mapped file) makes a CPU epoch cost little
more than the heads themselves. The cache is keyed by the model's fingerprint, the maximum length and
the texts, and reused by a resumed run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .heads import Batch


class StateCache:
    def __init__(self, folder: Path):
        meta = json.loads((folder / "meta.json").read_text())
        self.key, self.hidden = meta["key"], meta["hidden"]
        self.offsets = np.load(folder / "offsets.npy")
        self.ids = np.load(folder / "ids.npy", mmap_mode="r")
        self.states = np.memmap(folder / "states.f16", dtype=np.float16, mode="r",
                                shape=(int(self.offsets[-1]), self.hidden))

    @staticmethod
    def key_of(fingerprint: str, max_length: int, texts: list[tuple[str, bool]]) -> str:
        h = hashlib.sha256(f"{fingerprint}|{max_length}".encode())
        for text, is_query in texts:
            h.update(b"q" if is_query else b"d")
            h.update(text.encode())
            h.update(b"\0")
        return h.hexdigest()[:24]

    @classmethod
    def build(cls, encoder, texts: list[tuple[str, bool]], max_length: int, folder: Path,
              progress: bool = False) -> "StateCache":
        """Encode `texts` ((text, is_query) pairs) once, or reuse the cache already in `folder`."""
        from hsearch.encode.base import token_budget_batches

        key = cls.key_of(encoder.spec.fingerprint, max_length, texts)
        if (folder / "meta.json").exists() and json.loads((folder / "meta.json").read_text())["key"] == key:
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = encoder.spec
        ids, _cut = encoder.tokenize([(spec.query_prefix if q else spec.document_prefix) + t for t, q in texts],
                                     max_length)
        lengths = np.array([len(x) for x in ids], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        hidden = int(encoder.model.config.hidden_size)
        tmp = folder / "states.f16.tmp"
        states = np.memmap(tmp, dtype=np.float16, mode="w+", shape=(int(offsets[-1]), hidden))
        batches = token_budget_batches(lengths.tolist(), 16384, 128)
        bar = _bar(progress, int(offsets[-1]))
        for batch in batches:
            h, _mask, _ids = encoder.hidden_states([ids[i] for i in batch])
            for r, i in enumerate(batch):
                states[offsets[i]:offsets[i + 1]] = h[r, : lengths[i]].float().cpu().numpy()
            if bar is not None:
                bar.update(int(lengths[batch].sum()))
        if bar is not None:
            bar.close()
        states.flush()
        del states
        tmp.rename(folder / "states.f16")
        np.save(folder / "ids.npy", np.concatenate([np.asarray(x, np.int64) for x in ids]))
        np.save(folder / "offsets.npy", offsets)
        (folder / "meta.json").write_text(json.dumps({"key": key, "hidden": hidden, "texts": len(texts)}))
        return cls(folder)

    def batch(self, rows: list[int]) -> Batch:
        """Padded float32 states of the given texts."""
        n = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        width = max(n)
        hidden = torch.zeros(len(rows), width, self.hidden)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(rows):
            a, b = int(self.offsets[r]), int(self.offsets[r + 1])
            hidden[j, : n[j]] = torch.from_numpy(np.asarray(self.states[a:b], np.float32))
            ids[j, : n[j]] = torch.from_numpy(np.array(self.ids[a:b], np.int64))
            mask[j, : n[j]] = 1
        return Batch(hidden, ids, mask)

    def length(self, row: int) -> int:
        return int(self.offsets[row + 1] - self.offsets[row])


def _bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="token states", unit="tok")
