"""The int8 MaxSim path's compiled gather (numba): documents' rows of codes copied out of the memory map with their
sign bit flipped (int8 -> uint8 + 128, the zero point the MatMulInteger graph removes), and their scales, in one
pass of contiguous copies, where NumPy gathers row by row (np.take) and flips them in a second pass. Exact copies:
the NumPy path (maxsim.py) gives the same bytes. Imported where compiled loops are turned on (compiled.py).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def gather_int8(u8, scales, starts, ends, a, s):
    """Rows starts[i]:ends[i] of the codes `u8` (int8 viewed as uint8) into `a`, each byte ^ 0x80, and their
    `scales` (any dtype, as bits) into `s`, documents one after another."""
    j = 0
    for i in range(starts.shape[0]):
        for r in range(starts[i], ends[i]):
            for c in range(u8.shape[1]):
                a[j, c] = u8[r, c] ^ 0x80
            s[j] = scales[r]
            j += 1
