"""`POST /v1/embeddings`: OpenAI's embeddings API, plus the sparse weights and multi-vectors on request.

Why an extension field (`"return": ["dense", "sparse", "colbert"]`) on the same endpoint, not a sibling
endpoint: one encoder pass yields all three representations, so one request should be able to get them
together; OpenAI's clients pass extra body fields through (`extra_body=` in openai-python), and
without the field the response is exactly OpenAI's shape, so those clients work unchanged. vLLM and
others invented their own fields for the same gap; ours names what the encoder returns. Each item of
`data` then carries, besides `embedding` (the dense vector):
    sparse:  {"indices": [token ids], "values": [weights]} (Qdrant's sparse vector shape), floats always;
    colbert: one vector per token, a list of lists, or with encoding_format=base64 one base64 string per
             token (little-endian float32, as OpenAI encodes `embedding`).
`input_type` ("query" | "document", default "document") chooses the model's prefix (e5's `query: `).
`usage` counts tokens with the special tokens, before any truncation.
"""
from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, HTTPException, Request

from hsearch.server.schemas import MAX_BATCH, EmbeddingsRequest

router = APIRouter()


def _b64(vector) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _pick(request: Request, model: str | None):
    collections = list(request.app.state.collections.values())
    if model is None:
        return collections[0]
    for s in collections:
        if model in (s.name, s.reader.config.model):
            return s
    names = sorted({n for s in collections for n in (s.name, s.reader.config.model)})
    raise HTTPException(404, f"no model {model!r} on this server; use one of: {', '.join(names)} (or omit model)")


@router.post("/v1/embeddings", tags=["embeddings"])
def embeddings(request: Request, body: EmbeddingsRequest):
    """OpenAI-compatible embeddings; `return` and `input_type` are this server's extension fields."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_BATCH:
        raise HTTPException(400 if not texts else 413, f"input holds {len(texts)} texts; send 1 to {MAX_BATCH}")
    col = _pick(request, body.model)
    enc = col.reader.query_encoder
    if body.dimensions is not None and body.dimensions != enc.dim:
        raise HTTPException(400, f"dimensions={body.dimensions}: this model gives {enc.dim}; omit dimensions")
    want = set(body.outputs)
    with col.encode_lock:
        out = enc.encode(texts, is_query=body.input_type == "query", dense="dense" in want,
                         sparse="sparse" in want, colbert="colbert" in want)
        tok = enc.tokenizer
        extra = tok.num_special_tokens_to_add() if hasattr(tok, "num_special_tokens_to_add") else 0
        n_tokens = sum(len(tok(t, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]) + extra
                       for t in texts)
    b64 = body.encoding_format == "base64"
    data = []
    for i, r in enumerate(out):
        item = {"object": "embedding", "index": i}
        if "dense" in want:
            item["embedding"] = _b64(r.dense) if b64 else [float(x) for x in r.dense]
        if "sparse" in want:
            keys = sorted(r.sparse)
            item["sparse"] = {"indices": [int(t) for t in keys], "values": [float(r.sparse[t]) for t in keys]}
        if "colbert" in want:
            item["colbert"] = [_b64(row) if b64 else [float(x) for x in row] for row in r.colbert]
        data.append(item)
    return {"object": "list", "data": data, "model": col.reader.config.model,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
