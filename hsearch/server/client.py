"""A small HTTP client for `hsearch query --server` (stdlib only: the CLI stays fast to start)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from hsearch.errors import HsearchError

SERVER_FILE = "server.json"


class ServerError(HsearchError):
    """The server answered with an error (its message says what to do; `status`) or could not be reached
    (`status` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def collection_name(folder: str | Path) -> str:
    """The name a folder is served under: its base name without a leading dot (`.hsearch` -> `hsearch`)."""
    return Path(folder).expanduser().resolve().name.lstrip(".") or "default"


def running_server(folder: str | Path) -> dict | None:
    """{url, pid, name} from the collection's server.json when that server's process is alive, else None
    (a file left by a killed server is ignored)."""
    try:
        info = json.loads((Path(folder).expanduser() / SERVER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def query(url: str, name: str, body: dict, api_key: str | None = None, timeout: float = 60.0) -> dict:
    """POST the query to `url`'s collection `name`; the server's JSON answer."""
    return request(url, "POST", f"/collections/{name}/query", body, api_key, timeout)


def request(url: str, method: str, path: str, body=None, api_key: str | None = None, timeout: float = 60.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    if api_key:
        req.add_header("authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message") or e.reason
        except ValueError:
            message = e.reason
        raise ServerError(f"{url}: {message}", e.code) from None
    except (urllib.error.URLError, OSError) as e:
        raise ServerError(f"cannot reach the server at {url} ({getattr(e, 'reason', e)}); start it with "
                          "`hsearch serve`, or drop --server to search in this process") from None
