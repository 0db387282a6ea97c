"""Start `hsearch serve` as a user would: a subprocess on 127.0.0.1 and a free port, ready when /health answers.
Shared by tests/test_server.py and benchmarks/bench_serve.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(collections, *args: str, timeout: float = 120.0, log=None):
    """(process, url) of `hsearch serve -c DIR ... ARGS` once /health answers; the caller stops it."""
    port = free_port()
    cmd = [sys.executable, "-m", "hsearch.cli", "serve", "--port", str(port)]
    for c in collections:
        cmd += ["-c", str(c)]
    proc = subprocess.Popen(cmd + list(args), stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hsearch serve exited with {proc.returncode} before answering")
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
