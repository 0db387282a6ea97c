"""Training-free context-window extension for a loaded encoder (LongEmbed; BGE-M3's MCLS).

A `LongContext` (frozen) names a method and a target length; `Extension` binds it to one loaded
transformers model, checks that the method fits the model's kind of positions and precomputes what
it needs. The `Encoder` calls `Extension.applied(model)` around each forward pass: the swap is made
on that model instance only and undone on exit, so no transformers class is patched and any other
model in the process is untouched. Let L0 be the model's trained window (`EncoderSpec.max_length`,
special tokens included), T the target length (tokens entering the model per text) and pid the
token index 0..T-1.

    native      the model's own window (8192 for BGE-M3): no extension, no truncation below it
    chunk       parallel context windows: the text (cut at T) is split into windows of L0 tokens,
                each wrapped in the model's own first/last special tokens, the document prefix
                repeated in each; dense = mean of the windows' (normalised) vectors, normalised
                again; sparse = max per token id; multi-vector = the windows' vectors concatenated
    mcls        BGE-M3 appendix: a [CLS] before every `every` (256) text tokens; the inserted [CLS]
                rows are dropped from the multi-vector output (and from sparse, like every special
                token). T counts the inserted tokens. Alone it needs T <= L0; beyond, name a position
                method: `mcls+pi:4096`, `mcls+rp`, `mcls+ntk`, ... dense (`pool=`, default the
                model's own pooling): cls = the mean of the [CLS] states (BGE-M3's MCLS, for
                [CLS]-pooling models); mean = the model's mean over every token of the anchored input
                (for mean-pooling models such as e5, whose [CLS] state was never trained as an
                embedding: the inserted [CLS] tokens then only mark segment starts, as a 512-token
                window's own [CLS] does)
    pi          absolute table: interpolated to T rows, E_new[i*s] = E_old[i] with s = T/L0, linear in
                between (positions past (L0-1)*s reuse the last row); RoPE: every frequency / s
    rp          recurrent positions: pid % L0
    gp          grouped positions: pid // ceil(T / L0)
    ntk         RoPE only: base * s^(d/(d-2)) (NTK-aware; high frequencies kept)
    yarn        RoPE only: YaRN ramp between interpolated and original frequencies (beta_fast 32,
                beta_slow 1) and attention factor 0.1*ln(s)+1
    selfextend  RoPE only: exact relative positions inside the neighbour window |i-j| < w, grouped
                beyond it: the distance becomes sign(i-j) * (|i//g - j//g| + w - w//g), the
                bidirectional form of SelfExtend; defaults w = L0//4 and the smallest g that keeps
                every distance below L0. Blockwise and unfused (two extra score products per
                block; about 15x slower than SDPA on CPU at 30k tokens), memory bounded by
                `longctx_attention.BLOCK_BYTES`.

The position table, the frequencies and the groups are fixed by T, not by the input's length, so a
text gets the same vectors whatever it is batched with. rp and gp also work on RoPE models (they
only change position ids). On models with local (sliding-window) attention layers, such as
ModernBERT, only the global layers' rotary frequencies are rescaled: local layers never see a
distance beyond their window.

Memory: while applied, the model's attention goes through a function registered under its own key
(longctx_attention.py): SDPA's fused kernel, no (T, T) mask for an unpadded batch, and the encoder
gives every text past the native window a batch of its own, so memory grows linearly with T.
Files: this one parses a method and binds it to a model; longctx_rope.py holds the position
arithmetic, longctx_attention.py the attention kernels.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

from hsearch.errors import InputError, ModelError

from .longctx_attention import route
from .longctx_rope import (gp_positions, interpolate_table, ntk_inv_freq, pi_inv_freq, rope_inv_freq, rp_positions,
                           yarn_inv_freq)

METHODS = ("native", "chunk", "mcls", "pi", "rp", "gp", "ntk", "yarn", "selfextend")
POSITION_METHODS = ("pi", "rp", "gp", "ntk", "yarn", "selfextend")
ROPE_ONLY = ("ntk", "yarn", "selfextend")
MCLS_EVERY = 256  # BGE-M3 appendix
POOLS = ("cls", "mean")
SYNTAX = "METHOD[+POSITIONS][:LENGTH][,w=N][,g=N][,every=N][,pool=cls|mean], e.g. pi:4096, mcls+rp:4096, selfextend:8192,w=512"


@dataclass(frozen=True)
class LongContext:
    """A context-extension method and its target length (tokens entering the model per text).

    method:    one of METHODS; positions: the position method `mcls` runs with beyond the window;
    w, g:      selfextend's neighbour window and group size (None: chosen from L0 and the length);
    every:     mcls's spacing of [CLS] tokens; pool: mcls's dense pooling (None: the model's own).
    length None: the model's window (native, mcls only).
    """

    method: str
    length: int | None = None
    positions: str | None = None
    w: int | None = None
    g: int | None = None
    every: int = MCLS_EVERY
    pool: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown long-context method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.positions is not None:
            if self.method != "mcls":
                raise InputError(f"only mcls combines with a position method ('mcls+{self.positions}'); "
                                 f"{self.method!r} is one on its own")
            if self.positions not in POSITION_METHODS:
                raise InputError(f"mcls+{self.positions}: choose the position method from "
                                 f"{', '.join(POSITION_METHODS)}")
        for name in ("length", "w", "g", "every"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise InputError(f"long-context {name} must be a positive integer, got {v!r}")
        if self.length is not None and self.length < 2:
            raise InputError(f"long-context length must be at least 2 tokens, got {self.length}")
        if (self.w is not None or self.g is not None) and self.position_method != "selfextend":
            raise InputError("w= and g= are selfextend's settings; drop them or use selfextend")
        if self.every != MCLS_EVERY and self.method != "mcls":
            raise InputError("every= is mcls's setting; drop it or use mcls")
        if self.pool is not None and self.method != "mcls":
            raise InputError("pool= is mcls's setting; drop it or use mcls")
        if self.pool is not None and self.pool not in POOLS:
            raise InputError(f"mcls pool={self.pool!r}: choose cls (mean of the [CLS] states) or mean (mean of all "
                             "token states)")
        if self.length is None and self.method not in ("native", "mcls"):
            raise InputError(f"long-context method {self.method!r} needs a target length: {self.method}:4096 "
                             "or --long-context-length 4096")

    @property
    def position_method(self) -> str | None:
        """The method that changes positions (pi, rp, ...), if any."""
        return self.method if self.method in POSITION_METHODS else self.positions

    @classmethod
    def parse(cls, text: str, length: int | None = None) -> "LongContext":
        """'pi:4096', 'mcls+rp:4096,every=256,pool=mean', 'selfextend:8192,w=512,g=16'; `length` may give the length."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"empty long-context method; syntax: {SYNTAX}")
        head, *options = [p.strip() for p in text.strip().lower().split(",")]
        name, _, size = head.partition(":")
        method, _, positions = name.partition("+")
        kw = {}
        for opt in options:
            key, eq, value = opt.partition("=")
            if key not in ("w", "g", "every", "pool") or not eq:
                raise InputError(f"long-context option {opt!r} not understood; syntax: {SYNTAX}")
            kw[key] = value.strip() if key == "pool" else _int(value, key)
        if size:
            n = _int(size, "length")
            if length is not None and int(length) != n:
                raise InputError(f"long-context length given twice ({n} in {text!r}, {length} as a separate "
                                 "option); give it once")
            length = n
        return cls(method.strip(), None if length is None else int(length), positions.strip() or None, **kw)

    def __str__(self) -> str:
        out = self.method + (f"+{self.positions}" if self.positions else "")
        out += f":{self.length}" if self.length is not None else ""
        out += "".join(f",{k}={getattr(self, k)}" for k in ("w", "g") if getattr(self, k) is not None)
        out += f",every={self.every}" if self.method == "mcls" else ""
        return out + (f",pool={self.pool}" if self.pool else "")


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"long-context {what} {value!r} is not an integer; syntax: {SYNTAX}") from None



def split_windows(ids: list[int], window: int, prefix: int = 0) -> list[list[int]]:
    """Consecutive windows of at most `window` tokens: [ids[0]] + prefix tokens + part + [ids[-1]]."""
    head, tail, body = ids[0], ids[-1], ids[1:-1]
    pre, body = body[:prefix], body[prefix:]
    step = window - 2 - len(pre)
    if step < 1:
        raise InputError(f"chunk windows of {window} tokens leave no room for text after the prefix")
    if not body:
        return [list(ids)]
    return [[head, *pre, *body[k:k + step], tail] for k in range(0, len(body), step)]


def insert_cls(ids: list[int], every: int) -> tuple[list[int], list[int]]:
    """MCLS: ids[0] (the [CLS]) again before every `every` text tokens; (new ids, [CLS] positions)."""
    head, tail, body = ids[0], ids[-1], ids[1:-1]
    out, where = [], []
    for k in range(0, max(len(body), 1), every):
        where.append(len(out))
        out += [head, *body[k:k + every]]
    return out + [tail], where


def mcls_text_tokens(length: int, every: int) -> int:
    """The longest tokenised text (its two special tokens included) that fits `length` after MCLS."""
    body = length - 2
    while body > 0 and body + max(1, math.ceil(body / every)) + 1 > length:
        body -= 1
    return body + 2


# ---- binding to a model ------------------------------------------------------------------------

class Extension:
    """A `LongContext` bound to one loaded model: checked against it, with its tables precomputed.

    window: the model's trained window L0; pooling: the encoder's dense pooling ("cls" or "mean"),
    which mcls follows unless its `pool=` says otherwise.
    """

    def __init__(self, settings: LongContext, model, window: int, pooling: str = "cls", name: str = "the model"):
        self.settings, self.window, self.name = settings, int(window), name
        s = settings
        self.kind = _position_kind(model)
        self.offset = _offset(model.embeddings) if self.kind == "absolute" else 0
        self.position = s.position_method
        self.length = int(s.length or self.window)
        self.pool = (s.pool or pooling) if s.method == "mcls" else None
        if s.method == "native" and self.length > self.window:
            fit = [m for m in METHODS if m != "native" and (self.kind == "rope" or m not in ROPE_ONLY)]
            raise InputError(f"native keeps {name}'s window of {self.window} tokens; for {self.length} choose an "
                             f"extension method ({', '.join(fit)})")
        if s.method == "mcls" and self.position is None and self.length > self.window:
            raise InputError(f"mcls alone cannot go past {name}'s window of {self.window} tokens; add a position "
                             f"method: mcls+pi:{self.length}, mcls+rp:{self.length} (or +gp"
                             f"{', +ntk, +yarn, +selfextend' if self.kind == 'rope' else ''})")
        if self.position is not None:
            self._check_positions()
        self.w = self.g = None
        if self.position == "selfextend":
            self._choose_groups()
        self.every = s.every
        self.text_tokens = mcls_text_tokens(self.length, s.every) if s.method == "mcls" else self.length
        if self.text_tokens < 3:
            raise InputError(f"long-context length {self.length} leaves no room for text")
        # Our attention function only where the model dispatches through transformers' AttentionInterface
        # (a model that branches on the implementation's name itself could fall back to eager).
        can = getattr(type(model), "_can_set_attn_implementation", None)
        self._route = bool(self.kind and can is not None and can())
        if self.position == "selfextend" and not self._route:
            raise ModelError(f"{name} does not dispatch attention through transformers' AttentionInterface; "
                             "selfextend cannot replace its attention (ntk or yarn can extend it)")
        self._table = self._rope = None
        self._prepare(model)

    def __str__(self) -> str:
        """The resolved settings (recorded in `EncoderSpec.long_context`)."""
        s = self.settings
        out = s.method + (f"+{s.positions}" if s.positions else "") + f":{self.length}"
        if self.position == "selfextend":
            out += f",w={self.w},g={self.g}"
        return out + (f",every={self.every},pool={self.pool}" if s.method == "mcls" else "")

    @property
    def factor(self) -> float:
        return self.length / self.window

    # -- checks --------------------------------------------------------------------------------
    def _check_positions(self):
        p, kind = self.position, self.kind
        if kind is None:
            raise InputError(f"{self.name} has neither a learned position table nor rotary embeddings that hsearch "
                             f"recognises; {p} cannot be applied (chunk works with any model)")
        if p in ROPE_ONLY and kind == "absolute":
            raise InputError(f"long-context method {p!r} works on rotary position embeddings (RoPE), but {self.name} "
                             f"has a learned absolute position table ({self.window} positions); use pi, rp or gp, "
                             "or chunk")
        if self.length < self.window:
            raise InputError(f"{p} extends {self.name}'s window of {self.window} tokens; a target of {self.length} is "
                             f"below it (give at least {self.window}, or use native/chunk to cut texts shorter)")

    def _choose_groups(self):
        s, window, length = self.settings, self.window, self.length
        self.w = s.w if s.w is not None else max(1, window // 4)
        if s.g is not None:
            self.g = s.g
        else:
            self.g = next((g for g in range(1, length + 1) if _farthest(length, self.w, g) < window), None)
            if self.g is None:
                raise InputError(f"selfextend: no group size keeps distances inside {window} with w={self.w}; "
                                 "lower w")
        far = _farthest(length, self.w, self.g)
        if far >= window:
            raise InputError(f"selfextend w={self.w}, g={self.g} at {length} tokens reaches distance {far}, beyond "
                             f"{self.name}'s trained {window - 1}; raise g or lower w")

    # -- precomputation ------------------------------------------------------------------------
    def _prepare(self, model):
        import torch

        p = self.position
        if self.kind == "absolute" and p == "pi":
            emb = model.embeddings
            old, off = emb.position_embeddings, self.offset
            if old.num_embeddings < off + self.window:
                raise ModelError(f"{self.name}'s position table has {old.num_embeddings} rows, fewer than its window "
                                 f"{self.window} (+{off} reserved); set max_length in hsearch_model.json")
            with torch.no_grad():
                weight = old.weight.detach()
                table = torch.cat([weight[:off], interpolate_table(weight[off:off + self.window], self.length)])
            self._table = torch.nn.Embedding.from_pretrained(table, freeze=True, padding_idx=old.padding_idx)
        elif self.kind == "rope" and p in ("pi", "ntk", "yarn", "selfextend"):
            self._rope = []
            for module, prefix in _rope_buffers(model):
                base = _rope_base(model.config, prefix, self.name)
                current = getattr(module, prefix + "inv_freq")
                dim = 2 * current.numel()
                plain = rope_inv_freq(base, dim)
                if not torch.allclose(plain, current.detach().float().cpu(), rtol=1e-3, atol=1e-6):
                    raise ModelError(f"{self.name}'s rotary frequencies do not follow 1/base^(2k/d) with base {base}; "
                                     f"{p} cannot rescale them")
                if p == "pi":
                    new, scale = pi_inv_freq(base, dim, self.factor), 1.0
                elif p == "ntk":
                    new, scale = ntk_inv_freq(base, dim, self.factor), 1.0
                elif p == "yarn":
                    new, scale = yarn_inv_freq(base, dim, self.factor, self.window)
                else:
                    new, scale = plain, None  # selfextend keeps the frequencies, changes distances
                self._rope.append((module, prefix, new, scale))

    # -- per forward pass ----------------------------------------------------------------------
    def position_ids(self, batch: int, width: int, device=None):
        """Position ids for a right-padded (batch, width) input, or None where the model's own are right."""
        import torch

        p = self.position
        if p is None or (self.kind == "rope" and p not in ("rp", "gp")):
            return None
        if p == "rp":
            pid = rp_positions(width, self.window)
        elif p == "gp":
            pid = gp_positions(width, self.window, self.length)
        else:
            pid = torch.arange(width)
        if self.kind == "absolute":
            pid = pid + self.offset
        return pid.unsqueeze(0).expand(batch, width).to(device)

    @contextmanager
    def applied(self, model):
        """Swap this method's table / frequencies / attention into `model`, restoring them on exit."""
        undo = []
        try:
            if self._table is not None:
                emb = model.embeddings
                old = emb.position_embeddings
                if self._table.weight.device != old.weight.device or self._table.weight.dtype != old.weight.dtype:
                    self._table = self._table.to(old.weight.device, old.weight.dtype)
                emb.position_embeddings = self._table
                undo.append(lambda: setattr(emb, "position_embeddings", old))
            for module, prefix, new, scale in self._rope or ():
                name = prefix + "inv_freq"
                old_freq = getattr(module, name)
                setattr(module, name, new.to(old_freq.device))
                undo.append(lambda m=module, n=name, o=old_freq: setattr(m, n, o))
                if scale is not None and hasattr(module, prefix + "attention_scaling"):
                    old_scale = getattr(module, prefix + "attention_scaling")
                    setattr(module, prefix + "attention_scaling", scale)
                    undo.append(lambda m=module, n=prefix + "attention_scaling", o=old_scale: setattr(m, n, o))
            if self._route:
                selfextend = (self._rope[0][2], self.w, self.g) if self.position == "selfextend" else None
                undo.append(route(model.config, selfextend))
            yield
        finally:
            for fn in reversed(undo):
                fn()


def _farthest(length: int, w: int, g: int) -> int:
    """The largest |distance| selfextend produces over `length` tokens."""
    if w >= length:
        return length - 1
    return max(w - 1, (length - 1) // g + w - w // g)


def _position_kind(model) -> str | None:
    import torch

    emb = getattr(model, "embeddings", None)
    table = getattr(emb, "position_embeddings", None)
    if isinstance(table, torch.nn.Embedding) and getattr(model.config, "position_embedding_type", None) in (
            None, "absolute"):
        return "absolute"
    return "rope" if _rope_buffers(model) else None


def _offset(embeddings) -> int:
    # RoBERTa / XLM-R number positions from padding_idx + 1 (fairseq's make_positions).
    if hasattr(type(embeddings), "create_position_ids_from_input_ids"):
        return int(embeddings.padding_idx) + 1
    return 0


def _rope_buffers(model) -> list[tuple[object, str]]:
    """(rotary module, buffer-name prefix) of every global rotary table (sliding-window ones skipped)."""
    out = []
    for module in model.modules():
        for name, _ in module.named_buffers(recurse=False):
            if name.endswith("inv_freq") and "original" not in name:
                prefix = name[: -len("inv_freq")]
                if not prefix.startswith("sliding"):
                    out.append((module, prefix))
    return out


def _rope_base(config, prefix: str, name: str) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    layer = prefix.rstrip("_")
    if layer and isinstance(params.get(layer), dict):
        params = params[layer]
    kind = params.get("rope_type", "default")
    if kind != "default":
        raise InputError(f"{name} already scales its RoPE ({kind!r}); a second extension on top is not supported")
    base = params.get("rope_theta", getattr(config, "rope_theta", None))
    if base is None:
        raise ModelError(f"{name}'s config names no rope_theta; cannot rescale its rotary embeddings")
    return float(base)
