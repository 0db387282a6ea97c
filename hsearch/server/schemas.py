"""Request bodies of the HTTP API (pydantic): what a client may send, with its bounds.

Shapes follow Qdrant's Query API and Meilisearch where they have one, OpenAI's for `/v1/embeddings`.
Unknown fields are refused (a misspelt `wehre` should not silently search everything), except on
`/v1/embeddings`, where OpenAI clients send fields of their own (`user`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000
MAX_DEPTH = 10_000
MAX_QUERY_CHARS = 10_000
MAX_BATCH = 1000          # documents per PUT, texts per embeddings request, ids per DELETE


class QueryRequest(BaseModel):
    """`POST /collections/{name}/query`: the arguments of `Collection.search` (and of `hsearch query`)."""
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The query text.")
    mode: str | None = Field(None, description="dense, sparse, colbert, bm25 joined by '+', or 'all'; "
                             "a suffix @maxp|@whole|@both picks how a document scores. Default: all+bm25, less "
                             "what the collection was built without.")
    k: int = Field(10, ge=1, le=MAX_K, description="Documents to return.")
    where: list[str] = Field([], max_length=64, description="Filters FIELD=VALUE, FIELD>N, path~GLOB (AND).")
    fusion: Literal["weighted", "rrf"] = "weighted"
    weights: dict[str, float] | str | None = Field(None, description='{"dense": 0.4, "sparse": 0.2} or '
                                                   '"dense=0.4,sparse=0.2"; default: the collection\'s.')
    normalize: Literal["none", "minmax", "dbsf"] | None = None
    rrf_k: int = Field(60, ge=1, le=10_000)
    low_coverage: str | None = Field(None, max_length=200, description='Min-max weights for a query the collection '
                                     'holds under a share T of the BM25 terms of, "T:WEIGHTS" (e.g. "0.5:colbert=1") '
                                     'or "off"; default: the model\'s own.')
    depth: int = Field(100, ge=1, le=MAX_DEPTH, description="Candidates each first-stage signal retrieves.")
    doc_score: Literal["maxp", "whole", "both"] | None = None
    whole_weight: float = Field(0.5, ge=0.0, le=1.0)
    ef_search: int | None = Field(None, ge=1, le=100_000,
                                  description="HNSW search effort of dense segments of 10k chunks or more (default 192).")
    explain: bool = Field(False, description="Also return the plan, as `hsearch query --explain` prints it.")


class DeleteRequest(BaseModel):
    """`DELETE /collections/{name}/documents`."""
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


Output = Literal["dense", "sparse", "colbert"]


class EmbeddingsRequest(BaseModel):
    """`POST /v1/embeddings`: OpenAI's request, plus two optional fields of ours (`return`, `input_type`)."""
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    input: str | list[str] = Field(description="One text or a list of texts (token-id input is not accepted).")
    model: str | None = Field(None, description="A served collection's name or its model's name; default: "
                              "the first collection's model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Accepted only when it equals the model's size.")
    outputs: list[Output] = Field(["dense"], alias="return", min_length=1,
                                  description='Extension: which representations to return, from "dense", '
                                  '"sparse", "colbert". Default ["dense"]: plain OpenAI shape.')
    input_type: Literal["query", "document"] = Field(
        "document", description="Extension: encode as queries (the model's query prefix) or documents.")
