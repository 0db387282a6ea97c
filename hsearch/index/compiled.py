"""The stores' compiled loops (numba modules beside their stores), imported on first use where turned on.

Importing numba and loading a loop's cached machine code take a few tenths of a second (benchmarks/bench_sparse.py
prints it): a process that answers one query and exits (`hsearch query`) turns them off and runs the NumPy paths,
which give the same results bit for bit; a server or an application pays the import once. The machine code is
compiled once per machine and cached on disk (`cache=True`).
"""
from __future__ import annotations

from importlib import import_module

_STATE: dict = {"enabled": True}


def use_compiled(enabled: bool) -> None:
    """Whether this process runs the compiled loops (else NumPy, with the same results)."""
    _STATE["enabled"] = enabled


def loops(name: str):
    """The module hsearch.index.<name> of numba loops; None where they are turned off or numba does not import."""
    if not _STATE["enabled"]:
        return None
    if name not in _STATE:
        try:
            _STATE[name] = import_module(f"hsearch.index.{name}")
        except ImportError:
            _STATE[name] = None
    return _STATE[name]
