"""Position arithmetic of the long-context methods (hsearch/encode/longctx.py): position ids, the
interpolated absolute table, rescaled RoPE frequencies, and the extra rotation SelfExtend applies.

Pure functions of their arguments, each following its paper's definition; the tests pin them against
transformers' own RoPE tables.
"""
from __future__ import annotations

import math


def rp_positions(n: int, window: int):
    """Recurrent positions: pid % window."""
    import torch

    return torch.arange(n) % window


def gp_positions(n: int, window: int, length: int):
    """Grouped positions: pid // ceil(length / window)."""
    import torch

    return torch.arange(n) // math.ceil(length / window)


def interpolate_table(table, length: int):
    """Stretch a (L0, H) position table to (length, H): row i*s is old row i (s = length/L0), linear between."""
    import torch

    old = table.shape[0]
    x = torch.arange(length, dtype=torch.float64) * old / length
    lo = x.floor().long().clamp(max=old - 1)
    hi = (lo + 1).clamp(max=old - 1)
    frac = (x - lo).clamp(max=1.0).to(torch.float32).unsqueeze(1)
    t = table.float()
    return (t[lo] * (1 - frac) + t[hi] * frac).to(table.dtype)


def rope_inv_freq(base: float, dim: int):
    """Plain RoPE inverse frequencies 1 / base^(2k/dim), k < dim/2."""
    import torch

    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def pi_inv_freq(base: float, dim: int, factor: float):
    """Position interpolation on RoPE: every frequency divided by the factor."""
    return rope_inv_freq(base, dim) / factor


def ntk_inv_freq(base: float, dim: int, factor: float):
    """NTK-aware scaling: the base raised to base * factor^(dim/(dim-2)), frequencies recomputed."""
    return rope_inv_freq(base * factor ** (dim / (dim - 2)), dim)


def yarn_inv_freq(base: float, dim: int, factor: float, original: int, beta_fast: float = 32.0,
                  beta_slow: float = 1.0, truncate: bool = True):
    """YaRN (Peng et al. 2023): (inverse frequencies, attention factor) for extending `original` positions."""
    import torch

    def correction_dim(rotations):  # the dimension whose wavelength fits `rotations` times in `original`
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos = base ** (torch.arange(0, dim, 2).float() / dim)
    keep = 1 - ramp  # 1: high frequency, kept (extrapolated); 0: low frequency, interpolated
    inv_freq = (1.0 / (factor * pos)) * (1 - keep) + (1.0 / pos) * keep
    attention = 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0
    return inv_freq, attention


def rotate(x, delta, inv_freq):
    """Rotate RoPE-encoded vectors x (..., T, D) further by `delta` (T,) positions (rotate-half layout)."""
    import torch

    rot = 2 * inv_freq.numel()
    angle = delta.to(torch.float32)[:, None] * inv_freq.to(torch.float32)[None, :]
    emb = torch.cat((angle, angle), dim=-1)
    xr = x[..., :rot].float()
    half = rot // 2
    turned = torch.cat((-xr[..., half:], xr[..., :half]), dim=-1)
    out = (xr * emb.cos() + turned * emb.sin()).to(x.dtype)
    return torch.cat((out, x[..., rot:]), dim=-1) if rot < x.shape[-1] else out
