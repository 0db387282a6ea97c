"""What this CPU can do, read once from /proc/cpuinfo: the encoder's precision choices
(hsearch/encode/precision.py) and the int8 MaxSim kernel (hsearch/index/maxsim.py) both ask."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); False elsewhere, where torch would
    emulate bf16 more slowly than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_vnni() -> bool:
    """Whether int8 dot products add in 32 bits (AVX512-VNNI or AVX-VNNI); without it ONNX Runtime's u8 x s8
    kernels saturate 16-bit pair sums. True off x86 (ARM's dot-product kernels do not saturate)."""
    flags = cpu_flags()
    if not flags or not flags & {"sse2", "avx2"}:
        return True
    return bool(flags & {"avx512_vnni", "avx_vnni"})
