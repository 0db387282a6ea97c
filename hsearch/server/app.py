"""The ASGI app: routes, the error shape, the body limit and the API key.

Every error is JSON {"status": "error", "message": ...} with a 4xx status (5xx only for a bug). A
library `HsearchError` keeps its message, the one `hsearch` prints on the command line.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hsearch.errors import CollectionError, HsearchError
from hsearch.server import embeddings, page, routes
from hsearch.server.limits import ApiKey, BodyLimit
from hsearch.server.served import ShuttingDown

log = logging.getLogger("hsearch.server")

MAX_BODY = 16 * 1024 * 1024


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        if e.get("type") == "json_invalid":
            parts.append(f"malformed JSON ({e.get('ctx', {}).get('error', 'cannot parse')}); send a JSON body")
        else:
            parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts) + " (the schema: /docs)"


def create_app(collections, api_key: str | None = None, max_body: int = MAX_BODY) -> FastAPI:
    """`collections`: `ServedCollection`s (hsearch/server/served.py), served by their names."""
    app = FastAPI(title="hsearch", summary="Hybrid search: dense + learned sparse + multi-vector + BM25",
                  description="Errors are JSON {\"status\": \"error\", \"message\": ...}. With an API key set, "
                              "send `Authorization: Bearer <key>` (all but /health, /, /docs, /openapi.json).")
    app.state.collections = {c.name: c for c in collections}

    @app.exception_handler(HsearchError)
    async def hsearch_error(request: Request, exc: HsearchError):
        # CollectionError: the folder's state (another process writing, a model mismatch), not the request
        status = 503 if isinstance(exc, ShuttingDown) else 409 if isinstance(exc, CollectionError) else 400
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        message = _validation_message(exc)
        if "json" not in request.headers.get("content-type", ""):
            message = "send the body as JSON with the header 'content-type: application/json'; " + message
        return _error(422, message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = str(exc.detail)
        if exc.status_code == 400 and message.startswith("There was an error parsing the body"):
            # FastAPI's words for a body json.loads refuses before parsing: bytes that are not UTF-8
            message = "the body could not be decoded; send JSON encoded in UTF-8"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the traceback")

    app.include_router(routes.router)
    app.include_router(embeddings.router)
    app.include_router(page.router)
    # outermost first: the key is checked before a body is read
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.add_middleware(ApiKey, key=api_key)
    return app
