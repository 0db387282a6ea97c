"""The attention function used while a long-context extension is applied (hsearch/encode/longctx.py).

Registered under its own key (no other model's attention changes) and selected on the extended
model's config only inside `Extension.applied` (through `route`). Its mask function builds no mask at
all for an unpadded batch (the encoder gives every text past the native window a batch of its own),
where transformers would materialise (T, T) masks for sliding-window layers (ModernBERT: about 14 GB
of index tensors at 30k tokens). Global layers then run SDPA's fused kernel (memory linear in T),
local layers a blockwise band (`banded_attention`), selfextend its blockwise grouped attention
(`selfextend_attention`).
"""
from __future__ import annotations

from typing import Callable

from .longctx_rope import rotate

BLOCK_BYTES = 128 * 2**20  # selfextend: working memory of one block of query rows
ATTENTION_KEY = "hsearch_longctx"

_ACTIVE: dict[int, tuple | None] = {}  # id(model config) -> selfextend's (inv_freq, w, g), or None


def route(config, selfextend: tuple | None = None) -> Callable[[], None]:
    """Send the attention of the model with `config` through this module until the returned undo is
    called. selfextend: its (inv_freq, w, g), or None for plain (SDPA or banded) attention."""
    previous = config._attn_implementation
    _register_attention()
    _ACTIVE[id(config)] = selfextend
    config._attn_implementation = ATTENTION_KEY
    return lambda: (setattr(config, "_attn_implementation", previous), _ACTIVE.pop(id(config), None))


def selfextend_attention(q, k, v, mask, scaling, inv_freq, w: int, g: int, block_bytes: int = BLOCK_BYTES):
    """Bidirectional SelfExtend over q, k rotated at positions 0..T-1: (B, H, T, D) in, (B, H, T, D) out.

    Pairs with |i-j| < w keep their exact distance; farther pairs use sign(i-j) * (|i//g - j//g| + w - w//g),
    obtained by rotating q and k further (rotations compose). `mask`: None, boolean (True = attend) or
    additive, broadcastable to (B, H, T, T). Query rows run in blocks of about `block_bytes` working memory;
    per block only the keys within w of the block need a per-pair choice, the rest are two plain products.
    """
    import torch

    b, h, t, _ = q.shape
    if k.shape[1] != h:  # grouped-query attention: share each key/value head
        k, v = k.repeat_interleave(h // k.shape[1], 1), v.repeat_interleave(h // k.shape[1], 1)
    pos = torch.arange(t, device=q.device)
    shift = w - w // g
    q_g = rotate(q, pos // g - pos, inv_freq)  # query at i//g
    k_left = rotate(k, pos // g - shift - pos, inv_freq)  # key left of its query: at j//g - shift
    k_right = rotate(k, pos // g + shift - pos, inv_freq)  # key right of its query: at j//g + shift
    out = torch.empty_like(q)
    rows = max(1, block_bytes // (b * h * t * 4 * 3))  # logits, their float copy, the softmax
    for a in range(0, t, rows):
        z = min(t, a + rows)
        lo, hi = max(0, a - w + 1), min(t, z + w - 1)  # keys within w of some query of the block
        qb, qg = q[:, :, a:z], q_g[:, :, a:z]
        d = pos[a:z, None] - pos[None, lo:hi]
        far = torch.where(d > 0, qg @ k_left[:, :, lo:hi].transpose(-1, -2),
                          qg @ k_right[:, :, lo:hi].transpose(-1, -2))
        parts = [torch.where(d.abs() < w, qb @ k[:, :, lo:hi].transpose(-1, -2), far)]
        if lo > 0:
            parts.insert(0, qg @ k_left[:, :, :lo].transpose(-1, -2))
        if hi < t:
            parts.append(qg @ k_right[:, :, hi:].transpose(-1, -2))
        logits = torch.cat(parts, dim=-1).float().mul_(scaling) if len(parts) > 1 else parts[0].float() * scaling
        del parts, far
        if mask is not None:
            m = mask[..., a:z, :]
            logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.float()
        out[:, :, a:z] = torch.softmax(logits, dim=-1).to(v.dtype) @ v
    return out


def banded_attention(q, k, v, radius: int, scaling: float, block: int = 1024):
    """Bidirectional attention limited to |i-j| <= radius, one block of query rows at a time."""
    import torch

    b, h, t, _ = q.shape
    if k.shape[1] != h:
        k, v = k.repeat_interleave(h // k.shape[1], 1), v.repeat_interleave(h // k.shape[1], 1)
    out = torch.empty_like(q)
    pos = torch.arange(t, device=q.device)
    for a in range(0, t, block):
        z, lo = min(t, a + block), max(0, a - radius)
        hi = min(t, z + radius)
        band = (pos[a:z, None] - pos[None, lo:hi]).abs() <= radius
        out[:, :, a:z] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, a:z], k[:, :, lo:hi], v[:, :, lo:hi], attn_mask=band, scale=scaling)
    return out


def _attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    config = module.config
    state = _ACTIVE.get(id(config))
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    if kwargs.get("sliding_window"):  # a local layer: plain attention within its window
        if attention_mask is not None:  # a padded batch (short texts): the usual band-and-padding mask
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                          scaling=scaling, **kwargs)
        radius = getattr(config, "sliding_window", None) or kwargs["sliding_window"] - 1
        return banded_attention(query, key, value, radius, scaling).transpose(1, 2).contiguous(), None
    if state is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    inv_freq, w, g = state
    out = selfextend_attention(query, key, value, attention_mask, scaling, inv_freq.to(query.device), w, g)
    return out.transpose(1, 2).contiguous(), None


def _mask(**kwargs):
    """sdpa's mask, or None for a batch without padding (no (T, T) tensor for any layer kind)."""
    from transformers.masking_utils import sdpa_mask

    padding = kwargs.get("attention_mask")
    if padding is None or bool(padding.all()):
        return None
    return sdpa_mask(**kwargs)


def _register_attention():
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if ATTENTION_KEY not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION_KEY, _attention_forward)
    if ATTENTION_KEY not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ATTENTION_KEY, _mask)
