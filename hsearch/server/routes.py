"""The collection endpoints: query, documents (upsert, delete, get), info, health.

Sync functions on purpose: FastAPI runs them in its thread pool, so queries run concurrently while
the event loop stays free; writes wait in their request thread for the collection's writer thread.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Request

from hsearch.server.schemas import MAX_BATCH, DeleteRequest, QueryRequest

router = APIRouter()


def served(request: Request, name: str):
    collections = request.app.state.collections
    if name not in collections:
        raise HTTPException(404, f"no collection {name!r} on this server; served: {', '.join(sorted(collections))}")
    return collections[name]


@router.get("/health", tags=["server"])
def health():
    """Liveness: answers without the API key."""
    return {"status": "ok"}


@router.get("/collections", tags=["collections"])
def list_collections(request: Request):
    """The names of the served collections and their folders."""
    return {"collections": [{"name": s.name, "folder": str(s.folder)}
                            for s in request.app.state.collections.values()]}


@router.get("/collections/{name}", tags=["collections"])
def info(request: Request, name: str):
    """What `hsearch info` prints: model, heads, counts, sizes, settings."""
    return served(request, name).reader.info()


@router.post("/collections/{name}/query", tags=["search"])
def query(request: Request, name: str, body: QueryRequest):
    """Search: hits with their fused score and each signal's score; the plan when `explain` is set."""
    start = time.perf_counter()
    col = served(request, name)
    plan = col.reader.plan(body.query, body.mode, k=body.k, where=body.where, depth=body.depth, fusion=body.fusion,
                           weights=body.weights, normalize=body.normalize, rrf_k=body.rrf_k,
                           doc_score=body.doc_score, whole_weight=body.whole_weight,
                           ef_search=body.ef_search, low_coverage=body.low_coverage)
    encoded, encoded_whole = col.encode_queries(plan)
    hits = col.reader.run(plan, encoded=encoded, encoded_whole=encoded_whole)
    out: dict[str, Any] = {"hits": [{"id": h.id, "score": h.score, "scores": h.scores, "snippet": h.snippet,
                                     "path": h.path, "title": h.title, "chunk": h.chunk, "metadata": h.metadata}
                                    for h in hits]}
    if body.explain:
        out["plan"] = plan.describe()
    out["took_ms"] = round((time.perf_counter() - start) * 1000, 3)
    return out


@router.put("/collections/{name}/documents", tags=["documents"])
def upsert(request: Request, name: str, documents: list[dict[str, Any]] = Body(
        description="Documents as `Collection.add` takes them: id (or _id), text, optional title, metadata; "
                    "other fields become metadata. A known id is replaced.")):
    """Add or replace documents; answers once they are committed (searchable and durable)."""
    if len(documents) > MAX_BATCH:
        raise HTTPException(413, f"{len(documents)} documents in one request; send at most {MAX_BATCH} per request")
    if not documents:
        raise HTTPException(400, "no documents; send a JSON list of {\"id\": ..., \"text\": ...}")
    col = served(request, name)
    return {"status": "ok", **col.upsert(documents)}


@router.delete("/collections/{name}/documents", tags=["documents"])
def delete(request: Request, name: str, body: DeleteRequest):
    """Delete documents by id; answers once the deletion is committed. `deleted`: how many existed."""
    return {"status": "ok", "deleted": served(request, name).delete(body.ids)}


@router.get("/collections/{name}/documents/{doc_id:path}", tags=["documents"])
def get_document(request: Request, name: str, doc_id: str):
    """One live document: id, title, path, text (its chunks joined), metadata."""
    doc = served(request, name).reader.get(doc_id)
    if doc is None:
        raise HTTPException(404, f"no document {doc_id!r} in collection {name!r}")
    return doc
