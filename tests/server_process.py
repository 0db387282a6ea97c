"""Start `hsearch serve` as a user would: a subprocess on 127.0.0.1 and a free port, ready when /health answers.
Shared by tests/test_server.py and benchmarks/bench_serve.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hsearch_env() -> dict:
    """The environment for an `hsearch` subprocess that runs this checkout's code (not an installed copy)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def start_server(collections, *args: str, timeout: float = 120.0, log=None):
    """(process, url) of `hsearch serve -c DIR ... ARGS` once /health answers; the caller stops it."""
    port = free_port()
    cmd = [sys.executable, "-m", "hsearch.cli", "serve", "--port", str(port)]
    for c in collections:
        cmd += ["-c", str(c)]
    stderr = log or tempfile.TemporaryFile()  # read back if the server exits before answering
    proc = subprocess.Popen(cmd + list(args), stdout=log or subprocess.DEVNULL, stderr=stderr, cwd=ROOT,
                            env=hsearch_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = ""
            if log is None:
                stderr.seek(0)
                said = ": " + stderr.read()[-2000:].decode("utf-8", "replace").strip()
            raise RuntimeError(f"hsearch serve exited with {proc.returncode} before answering{said}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"hsearch serve did not answer on {url} within {timeout} s")


def stop(proc, timeout: float = 30.0) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
