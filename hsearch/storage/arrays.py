"""`np.load` behind one process-wide lock.

numpy parses every .npy header with `ast.literal_eval`, and CPython 3.11 can raise a spurious
`SystemError: AST constructor recursion depth mismatch` when two threads parse at once (cpython#106905):
in `hsearch serve` a writer committing and queries opening the new snapshot did, about one run in four
of tests/test_merge.py's concurrency test. Parsing a header takes microseconds, so the lock costs nothing.
"""
from __future__ import annotations

import threading

import numpy as np

_LOCK = threading.Lock()


def load(path, mmap_mode: str | None = None) -> np.ndarray:
    """np.load of one .npy file (memory-mapped with mmap_mode="r")."""
    with _LOCK:
        return np.load(path, mmap_mode=mmap_mode)


def load_npz(path, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The arrays `names` of one .npz file, read in full."""
    with _LOCK, np.load(path) as z:
        return tuple(z[n] for n in names)
