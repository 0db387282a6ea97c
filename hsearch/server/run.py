"""Start the server: open the collections, warm their query encoders, write server.json, run uvicorn."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from hsearch.errors import InputError
from hsearch.server.client import SERVER_FILE  # {url, pid, name} in each served collection: `hsearch query` finds it
from hsearch.server.served import ServedCollection


def serve(folders, host: str = "127.0.0.1", port: int = 8765, api_key: str | None = None,
          max_body: int | None = None, log_level: str = "warning", ready=None, **open_options) -> None:
    """Serve `folders` until interrupted. `ready(url)` is called once the collections are open and warm."""
    import uvicorn

    from hsearch.server.app import MAX_BODY, create_app

    served = []
    for folder in folders:
        s = ServedCollection(folder, **open_options)
        if any(o.name == s.name for o in served):
            raise InputError(f"two collections are named {s.name!r} ({s.folder} and the one before); "
                             "serve folders with different names")
        s.warm()
        served.append(s)
    app = create_app(served, api_key=api_key, max_body=max_body or MAX_BODY)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    written = [_write_server_file(s, url) for s in served]
    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it lets the cleanup below run
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        if ready:
            ready(url)
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
    finally:
        for s in served:
            s.close()  # queued writes finish before the process ends
        for path in written:
            _remove_server_file(path)
        signal.signal(signal.SIGTERM, previous)


def _exit(signum, frame):
    raise SystemExit(0)


def _write_server_file(s: ServedCollection, url: str) -> Path:
    path = s.folder / SERVER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "name": s.name}))
    os.replace(tmp, path)
    return path


def _remove_server_file(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():  # not a newer server's file
            path.unlink()
    except (OSError, ValueError):
        pass
