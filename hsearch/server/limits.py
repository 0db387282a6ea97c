"""Request-level guards as plain ASGI middleware: a body size limit and an optional bearer API key.

Both answer before FastAPI reads or parses anything, with the API's error shape
{"status": "error", "message": ...}.
"""
from __future__ import annotations

import hmac
import json

# Paths a client may reach without the key: liveness for load balancers, the schema, the page.
OPEN_PATHS = {"/health", "/docs", "/openapi.json", "/", "/docs/oauth2-redirect"}


async def _send_error(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"status": "error", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413, by its Content-Length or while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = (f"request body over {self.max_bytes} bytes; send fewer documents or texts per request "
                   "(or start the server with a larger --max-body)")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(send, 413, message)
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return msg

        async def tracked_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, message)


class _TooLarge(Exception):
    pass


class ApiKey:
    """With a key set, every path but OPEN_PATHS needs `Authorization: Bearer KEY` (401 otherwise)."""

    def __init__(self, app, key: str | None):
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.key or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.key.encode()):
            why = "wrong API key" if header else "missing API key"
            return await _send_error(send, 401, f"{why}: send the header 'Authorization: Bearer <key>' with the "
                                     "key the server was started with (--api-key or $HSEARCH_API_KEY)",
                                     [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)
