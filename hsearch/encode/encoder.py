"""The torch encoder: a transformers model with BGE-M3's three heads, every model and long-context method.

Tokenising, batching and the per-text outputs are `TextEncoder`'s (hsearch/encode/base.py); this class
runs the padded batches through the transformer and the heads. float32 is the reference (what
`tests/test_encoder_parity.py` compares with FlagEmbedding); bf16 on a CPU with bf16 instructions and
fp16 on CUDA run the same code in that dtype (hsearch/encode/precision.py chooses).
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import replace

import numpy as np

from hsearch.errors import InputError

from .base import EncoderSpec, TextEncoder
from .longctx import Extension, LongContext

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class Encoder(TextEncoder):
    """A transformer with BGE-M3's three heads. Build it with `hsearch.encode.load_encoder`."""

    def __init__(self, model, tokenizer, spec: EncoderSpec, sparse_linear=None, colbert_linear=None,
                 device: str | None = None, threads: int | None = None, long_context: LongContext | None = None,
                 precision: str | None = None):
        """precision: "fp32" | "bf16" | "fp16", already checked against the device
        (hsearch/encode/precision.py); None: fp16 on CUDA, fp32 elsewhere."""
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision or ("fp16" if self.device.startswith("cuda") else "fp32")
        self.dtype = getattr(torch, TORCH_DTYPES[self.precision])
        self.model = model.to(self.device, self.dtype).eval()
        self.sparse_linear = sparse_linear.to(self.device, self.dtype).eval() if sparse_linear else None
        self.colbert_linear = colbert_linear.to(self.device, self.dtype).eval() if colbert_linear else None
        self._setup(tokenizer, spec)
        # A long-context method: texts up to its target length; the model itself is only changed
        # inside each forward pass (`Extension.applied`).
        self.long_context = (Extension(long_context, self.model, spec.max_length, spec.pooling, spec.name)
                             if long_context is not None else None)
        self.spec = replace(spec, long_context=str(self.long_context) if self.long_context else "")
        if self.long_context is not None and self.long_context.settings.method in ("chunk", "mcls"):
            probe = tokenizer("a", add_special_tokens=True)["input_ids"]
            if len(probe) < 3 or probe[0] not in self._special_ids or probe[-1] not in self._special_ids:
                raise InputError(f"{self.long_context.settings.method} needs a tokenizer that wraps each text in "
                                 f"special tokens ([CLS] ... [SEP]); {spec.name}'s does not")

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def colbert_dim(self) -> int:
        return int(self.colbert_linear.out_features) if self.colbert_linear is not None else self.dim

    @property
    def passage_encoder(self) -> "Encoder":
        """This encoder without its long-context method (self when it has none): a collection's
        passages are encoded by the plain model, its whole-document view by the extended one. The
        two share the model, which `Extension.applied` changes only inside a forward pass."""
        if self.long_context is None:
            return self
        runner = self.batch_runner  # Ray (attached after loading): replicas that load the plain model
        cached = getattr(self, "_plain", None)
        if cached is None or cached[0] is not runner:
            plain = copy.copy(self)
            plain.long_context, plain.spec = None, replace(self.spec, long_context="")
            plain.batch_runner = runner.without_long_context() if runner is not None else None
            self._plain = cached = (runner, plain)
        return cached[1]

    def hidden_states(self, batch_ids: list[list[int]]):
        """Last hidden states (B, T, H) and the attention mask (B, T) of a padded batch."""
        import torch

        width = max(len(x) for x in batch_ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for r, x in enumerate(batch_ids):
            input_ids[r, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[r, :len(x)] = 1
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        lc = self.long_context
        positions = lc.position_ids(len(batch_ids), width, self.device) if lc is not None else None
        if positions is not None:
            inputs["position_ids"] = positions
        # Explicit zeros: XLM-R would otherwise gather its token-type buffer at our (extended) position ids.
        if self._needs_token_types or (positions is not None and lc.kind == "absolute"):
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        with lc.applied(self.model) if lc is not None else nullcontext(), torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state
        return hidden, inputs["attention_mask"], inputs["input_ids"]

    def _heads(self, batch_ids, want_dense, want_sparse, want_colbert, cls_at):
        import torch

        hidden, mask, input_ids = self.hidden_states(batch_ids)
        with torch.inference_mode():
            dense = sparse_w = colb = None
            if want_dense:
                if cls_at is not None and self.long_context.pool == "cls":  # MCLS: the mean of every [CLS] state
                    dense = torch.stack([hidden[r, at].mean(0) for r, at in enumerate(cls_at)]).float()
                else:  # mcls with pool=mean pools here too: the inserted [CLS] states count as tokens
                    dense = self._pool(hidden.float(), mask)  # summed in float32 whatever the model's dtype
                if self.spec.normalize:
                    dense = torch.nn.functional.normalize(dense, dim=-1)
                dense = dense.cpu().numpy()
            if want_sparse:
                if self.sparse_linear is not None:
                    # float64: one weight is a dot product whose float32 rounding changed with the BLAS
                    # kernel a process picked (seen in Ray workers); rounded from float64 it does not
                    lin = self.sparse_linear
                    sparse_w = torch.relu(torch.nn.functional.linear(hidden.double(), lin.weight.double(),
                                                                     None if lin.bias is None else lin.bias.double()))
                    sparse_w = sparse_w.squeeze(-1).float().cpu().numpy()
                else:
                    sparse_w = np.ones(tuple(hidden.shape[:2]), dtype=np.float32)
            if want_colbert:
                states = hidden[:, 1:]
                if self.colbert_linear is not None:
                    states = self.colbert_linear(states)
                colb = torch.nn.functional.normalize(states.float(), dim=-1).cpu().numpy()
        return dense, sparse_w, colb

    def _pool(self, hidden, mask):
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


