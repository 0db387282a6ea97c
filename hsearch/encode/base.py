"""What every encoder shares, whatever runs its transformer: texts -> token ids -> length-grouped batches
-> the three representations (BGE-M3 definitions).

`TextEncoder.encode_queries` / `encode_documents` return one `Encoded` per text. Texts are tokenised
once, grouped by length and packed into batches under a token budget, so one long text never pads a
whole batch (BGE-M3 section 3.4); results come back in input order. A subclass runs one padded batch
(`_heads`: the pooled dense vectors, the sparse head's per-token weights, the multi-vector rows) and
this class turns that into `Encoded`s: per token id the max sparse weight, special tokens and the
instruction prefix left out, the first position and padding dropped from the multi-vectors.
Subclasses: `hsearch.encode.encoder.Encoder` (torch + transformers, every model and long-context
method) and `hsearch.encode.onnx_encoder.OnnxEncoder` (ONNX Runtime, no torch: the query path).

The definitions (dense: the first token's state, or the mean, L2-normalised; sparse: relu(W_sparse H_i)
max-pooled per token id, special tokens and weights <= 0 dropped; multi-vector:
normalize(W_colbert H_i) for every position but the first) are FlagEmbedding's `BGEM3FlagModel`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from hsearch.errors import InputError
from hsearch.types import Encoded

from .longctx import insert_cls, split_windows

log = logging.getLogger("hsearch")


@dataclass(frozen=True)
class EncoderSpec:
    """What a loaded model is, as recorded in a collection (a different spec is a different model)."""

    name: str
    pooling: str = "cls"  # "cls" (BGE-M3) or "mean" (e5, MiniLM)
    query_prefix: str = ""
    document_prefix: str = ""
    max_length: int = 512  # the model's trained window (position table size - offset)
    normalize: bool = True
    sparse_head: str = "trained"  # "trained" | "unit" (no head file: 1/sqrt(n) per distinct token)
    # "trained" | "identity" (no head file: normalised token states) | "identity-file" (colbert_linear.pt holds
    # the identity with zero bias, as e5-small's shipped head does: the same vectors, no matmul is run)
    colbert_head: str = "trained"
    fingerprint: str = ""  # the model folder's identity
    long_context: str = ""  # resolved long-context method ("pi:4096", ...); "" = none. Part of the identity
    # Fusion weights the heads were tuned for (fusion.json in the model folder), recorded in a collection at
    # build time as its default weights; {} = the planner's. A query-time default, not part of the identity.
    fusion_weights: dict = field(default_factory=dict, compare=False, hash=False)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def describe_heads(self) -> dict[str, str]:
        notes = {"dense": f"{self.pooling} pooling"}
        notes["sparse"] = ("trained head (sparse_linear.pt)" if self.sparse_head == "trained"
                           else "missing: using unit weights (1/sqrt(n) per distinct token: token-overlap cosine); "
                           "train heads for a real signal")
        notes["colbert"] = {
            "trained": "trained head (colbert_linear.pt)",
            "identity-file": "identity head (colbert_linear.pt is the identity matrix): the normalised token states",
        }.get(self.colbert_head, "missing: using the normalised token states (identity head)")
        return notes


def token_budget_batches(lengths: list[int], budget: int, max_batch: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, so batch_size * longest_in_batch <= budget.

    A text longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        n = lengths[i]
        longest_if_added = max(longest, n)
        if current and (longest_if_added * (len(current) + 1) > budget or len(current) >= max_batch):
            batches.append(current)
            current, longest_if_added = [], n
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def fixed_size_batches(n: int, batch_size: int) -> list[list[int]]:
    """Plain input-order batches (the baseline the benchmark compares against)."""
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


class TextEncoder:
    """Tokenising, batching and the per-text outputs; `_heads` (one padded batch) is the subclass's."""

    # Runs the planned batches elsewhere: f(list of batches of token ids, dense, sparse, colbert) ->
    # one list of Encoded per batch, each as `_encode_batch` gives it (hsearch/encode/ray_runner.py).
    batch_runner = None
    long_context = None  # a bound long-context method (`Extension`), torch only
    # how this encoder computes: its runtime and number format ("torch", "fp32"), see hsearch/encode/precision.py
    runtime, precision = "torch", "fp32"

    def _setup(self, tokenizer, spec: "EncoderSpec") -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self._special_ids = sorted({
            tid for tid in (tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id,
                            tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id)
            if tid is not None})
        self._needs_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        # e5's "query: " / "passage: " are instructions, not content: both end in the token ":", so
        # kept in the sparse output every query would match every document on it (and on "query"
        # in a text that says query), and in the multi-vector one every query token would find it
        self._prefixes = prefix_token_ids(tokenizer, (spec.query_prefix, spec.document_prefix))

    @property
    def max_tokens(self) -> int:
        """Tokens of one text (special tokens included) encoded before truncation: the long-context
        target (less the [CLS] tokens mcls inserts), else the model's window."""
        return self.long_context.text_tokens if self.long_context else self.spec.max_length

    @property
    def passage_encoder(self) -> "TextEncoder":
        return self

    def warm(self) -> None:
        """Make the first calls as fast as the later ones (a server calls this at start-up)."""
        warm = getattr(self.tokenizer, "warm", None)
        if warm is not None:
            warm()

    # ---- public API -------------------------------------------------------------------------

    def encode_queries(self, texts, **kw) -> list[Encoded]:
        return self.encode(texts, is_query=True, **kw)

    def encode_documents(self, texts, **kw) -> list[Encoded]:
        return self.encode(texts, is_query=False, **kw)

    def encode(self, texts, *, is_query: bool = False, dense: bool = True, sparse: bool = True,
               colbert: bool = True, max_length: int | None = None, token_budget: int = 16384,
               max_batch: int = 128, batching: str = "tokens", progress: bool = False) -> list[Encoded]:
        """Encode `texts` (a list of non-empty strings). Texts longer than `max_length` (default
        `max_tokens`) are truncated with a warning."""
        texts = _check_texts(texts)
        if not texts:
            return []
        max_length = self._window(max_length)
        prefix = self.spec.query_prefix if is_query else self.spec.document_prefix
        ids, cut = self.tokenize([prefix + t for t in texts], max_length)
        if sum(c > 0 for c in cut):
            hint = ("raise the long-context length" if self.long_context is not None else
                    "raise --max-length up to the model's window or use a long-context method")
            log.warning("%d of %d texts were longer than %d tokens; %d tokens were cut. Long documents are "
                        "split into chunks by `hsearch index`; for a single text %s.", sum(c > 0 for c in cut),
                        len(texts), max_length, sum(cut), hint)
        units = ids
        if self.long_context is not None and self.long_context.settings.method == "chunk":
            units, owner = self._windows(ids)
        lengths = [len(x) for x in units]
        if batching == "tokens":
            batches = token_budget_batches(lengths, token_budget, max_batch)
        elif batching == "fixed":
            batches = fixed_size_batches(len(units), max_batch)
        else:
            raise InputError(f"unknown batching {batching!r}; choose 'tokens' or 'fixed'")
        if self.long_context is not None:
            # Past the native window, one text per batch: without padding there is no (B, T, T) mask,
            # and SDPA's fused kernel keeps attention memory linear in T.
            batches = [part for batch in batches for part in
                       ([batch] if max(lengths[i] for i in batch) <= self.spec.max_length else [[i] for i in batch])]
        out: list[Encoded | None] = [None] * len(units)
        if self.batch_runner is not None:  # the same batches, so the same bits, encoded by other processes
            done = self.batch_runner([[units[i] for i in batch] for batch in batches], dense, sparse, colbert)
            for batch, encs in zip(batches, done):
                for i, enc in zip(batch, encs):
                    out[i] = enc
        else:
            bar = _progress(progress, total=sum(lengths), desc="encoding", unit="tok")
            for batch in batches:
                for i, enc in zip(batch, self._encode_batch([units[i] for i in batch], dense, sparse, colbert)):
                    out[i] = enc
                if bar is not None:
                    bar.update(sum(lengths[i] for i in batch))
            if bar is not None:
                bar.close()
        if units is not ids:
            out = [self._pool_windows([out[j] for j in owner[i]]) for i in range(len(ids))]
        for i, enc in enumerate(out):
            enc.n_tokens, enc.truncated_tokens = len(ids[i]), cut[i]
        return out  # type: ignore[return-value]

    def tokenize(self, texts: list[str], max_length: int) -> tuple[list[list[int]], list[int]]:
        """Token ids per text (with special tokens, cut to max_length) and how many tokens were cut."""
        # verbose=False: transformers' "longer than the specified maximum" note; we report cuts ourselves
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        cut = [max(0, len(x) - max_length) for x in full]
        long = [i for i, c in enumerate(cut) if c]
        if long:  # re-tokenise only the long ones, so the tokenizer's own truncation rule applies
            short = self.tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=True,
                                   max_length=max_length)["input_ids"]
            for i, x in zip(long, short):
                full[i] = x
        return [list(x) for x in full], cut

    # ---- internals -------------------------------------------------------------------------

    def _window(self, max_length: int | None) -> int:
        if max_length is None:
            return self.max_tokens
        if max_length < 2:
            raise InputError(f"max_length must be at least 2, got {max_length}")
        if max_length > self.max_tokens:
            if self.long_context is not None:
                raise InputError(f"max_length {max_length} exceeds the long-context target ({self.spec.long_context}: "
                                 f"{self.max_tokens} text tokens); raise the target length instead")
            raise InputError(f"max_length {max_length} exceeds the model's window of {self.spec.max_length} "
                             "tokens; use a long-context method to go beyond it")
        return max_length

    def _windows(self, ids: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        """chunk: every text's windows of the native length, and which windows belong to which text."""
        units, owner = [], []
        for x in ids:
            p = prefix_length(x, self._prefixes)  # repeat the prefix only where it tokenised alone
            windows = split_windows(x, self.spec.max_length, p)
            owner.append(list(range(len(units), len(units) + len(windows))))
            units += windows
        return units, owner

    def _pool_windows(self, parts: list[Encoded]) -> Encoded:
        """chunk: mean of the windows' dense vectors (normalised again), max sparse weight, concatenated vectors."""
        enc = Encoded()
        if parts[0].dense is not None:
            enc.dense = np.mean([p.dense for p in parts], axis=0).astype(np.float32)
            if self.spec.normalize:
                enc.dense /= max(float(np.linalg.norm(enc.dense)), 1e-12)
        if parts[0].sparse is not None:
            merged: dict[int, float] = {}
            for p in parts:
                for t, w in p.sparse.items():
                    merged[t] = max(w, merged.get(t, 0.0))
            if self.spec.sparse_head == "unit" and merged:  # unit weights over the whole text, as for one window
                merged = {t: 1.0 / np.sqrt(len(merged)) for t in merged}
            enc.sparse = merged
        if parts[0].colbert is not None:
            enc.colbert = np.ascontiguousarray(np.concatenate([p.colbert for p in parts]))
        return enc

    def _heads(self, batch_ids, want_dense, want_sparse, want_colbert, cls_at):
        """One padded batch -> (dense (B, D) normalised as the spec says, sparse head weights (B, T),
        multi-vector rows (B, T-1, d) normalised), numpy float32, None where not wanted. `cls_at`:
        mcls's [CLS] positions per text (None without mcls)."""
        raise NotImplementedError

    def _encode_batch(self, batch_ids, want_dense, want_sparse, want_colbert) -> list[Encoded]:
        cls_at = None
        skip = [prefix_length(x, self._prefixes) for x in batch_ids]  # before MCLS inserts tokens
        if self.long_context is not None and self.long_context.settings.method == "mcls":
            batch_ids, cls_at = map(list, zip(*(insert_cls(x, self.long_context.every) for x in batch_ids)))
        dense, sparse_w, colb = self._heads(batch_ids, want_dense, want_sparse, want_colbert, cls_at)
        results = []
        specials = np.asarray(self._special_ids, dtype=np.int64)
        for r, ids in enumerate(batch_ids):
            n = len(ids)
            enc = Encoded(n_tokens=n)
            if dense is not None:
                enc.dense = dense[r]
            # Positions that are not content for sparse and multi-vector: the prefix's (its first skip[r]
            # text tokens, moved by the [CLS] MCLS inserts before every `every` of them) and those [CLS]
            at = np.arange(skip[r], dtype=np.int64)
            prefix_at = 1 + at + (at // self.long_context.every if cls_at is not None else 0)
            if sparse_w is not None:
                weights = sparse_w[r, :n]
                if prefix_at.size:
                    weights = weights.copy()
                    weights[prefix_at] = 0.0
                enc.sparse = _max_pool_weights(np.asarray(ids, dtype=np.int64), weights, specials)
                if self.spec.sparse_head == "unit" and enc.sparse:
                    # No trained head: binary bag of tokens, L2-normalised, so the score is a cosine in
                    # [0, 1] on the dense signal's scale instead of a raw count of shared pieces.
                    w = 1.0 / np.sqrt(len(enc.sparse))
                    enc.sparse = {t: w for t in enc.sparse}
            if colb is not None:
                drop = prefix_at if cls_at is None else np.concatenate([prefix_at, np.asarray(cls_at[r][1:], np.int64)])
                # first position dropped (row i is position i + 1), no padding
                rows = colb[r, : n - 1]
                enc.colbert = np.ascontiguousarray(np.delete(rows, drop - 1, axis=0) if drop.size else rows)
            results.append(enc)
        return results


def prefix_token_ids(tokenizer, prefixes) -> list[list[int]]:
    """Each non-empty instruction prefix ("query: ") as the token ids it becomes at a text's start."""
    out = []
    for p in prefixes:
        ids = tokenizer(p.strip(), add_special_tokens=False)["input_ids"] if p and p.strip() else []
        if ids and ids not in out:
            out.append(list(ids))
    return out


def prefix_length(ids, prefixes: list[list[int]]) -> int:
    """How many tokens after the first (special) token are an instruction prefix: 0 where none is, or
    where the prefix merged with the text's first word when tokenised (then it is not cleanly there)."""
    for p in prefixes:
        if list(ids[1:1 + len(p)]) == p and len(ids) > len(p) + 1:
            return len(p)
    return 0


def _max_pool_weights(ids: np.ndarray, weights: np.ndarray, specials: np.ndarray) -> dict[int, float]:
    """{token id: max weight over its occurrences}, special tokens and weights <= 0 dropped."""
    keep = (weights > 0) & ~np.isin(ids, specials)
    ids, weights = ids[keep], weights[keep]
    if ids.size == 0:
        return {}
    order = np.lexsort((-weights, ids))  # by id, then weight descending: first of each id is its max
    ids, weights = ids[order], weights[order]
    first = np.ones(ids.size, dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return {int(t): float(w) for t, w in zip(ids[first], weights[first])}


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise InputError("pass a list of texts, not a single string (wrap it: [text])")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"text {i} is a {type(t).__name__}, not a string; convert it with str() first")
        if not t.strip():
            raise InputError(f"text {i} is empty or only whitespace; remove it before encoding")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate (JSON "\ud800"): the tokenizer would fail obscurely
            raise InputError(f"text {i} is not valid Unicode ({e.reason} at character {e.start}); decode its source "
                             "with errors='replace' or drop the character") from None
    return texts


def _progress(enabled: bool, **kw):
    if not enabled or os.environ.get("HSEARCH_QUIET"):
        return None
    from tqdm.auto import tqdm

    return tqdm(**kw)
