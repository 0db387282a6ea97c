"""A LlamaIndex vector store over a collection (the `llamaindex` extra: llama-index-core).

    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from hsearch.integrations.llamaindex import HsearchVectorStore

    store = HsearchVectorStore(collection)              # an open Collection, or a folder
    # hsearch encodes nodes and queries itself: LlamaIndex's embed model is never asked for a query,
    # and what it computes for inserted nodes is dropped, so give it the cheapest one
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=1))
    index.insert_nodes(nodes)
    index.as_retriever(similarity_top_k=5, vector_store_query_mode="hybrid").retrieve("how do cats sleep?")

Each node is one hsearch document: its node id, its text (`get_content()` without metadata), and its
metadata plus the node itself serialised (`node_to_metadata_dict`, as LlamaIndex's own stores do), so
a hit comes back as the node that was added. Documents indexed by hsearch itself (`hsearch index`)
come back as plain TextNodes.

Query modes (`VectorStoreQuery.mode` -> hsearch mode):
    DEFAULT      -> `default_mode` ("dense")
    HYBRID       -> `hybrid_mode` ("dense+sparse"); `alpha` weighs the vector signals (dense, colbert)
                    against the lexical ones (sparse, bm25): weights alpha and 1 - alpha
    SPARSE       -> "sparse" (the learned sparse head)
    TEXT_SEARCH  -> "bm25"
The others (MMR, SVM, SEMANTIC_HYBRID, ...) are refused. `query(..., mode=..., where=..., weights=...,
fusion=..., depth=...)` (or a retriever's `vector_store_kwargs`) passes any `Collection.search` option.

Metadata filters (`MetadataFilters`, AND-ed, nested ones too) map to hsearch's where: EQ, NE, GT,
GTE, LT, LTE, IN with one value, NIN (one != per value) and TEXT_MATCH (substring, case-sensitive); the
rest, and OR / NOT over several filters, are refused (where has no OR). A document without the key
never matches, NE and NIN included (LlamaIndex's in-memory store matches it). `doc_ids` and `node_ids`
take one id each, for the same reason; empty, they narrow nothing (`VectorStoreIndex.as_retriever` passes
the index's own node list, empty for a store that keeps the text; with `store_nodes_override=True` it
lists every node, and queries are refused).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from hsearch.engine import Collection, open_collection
from hsearch.errors import InputError
from hsearch.integrations.filters import condition, native
from hsearch.query.plan import parse_mode

REF_DOC_ID = "ref_doc_id"  # node_to_metadata_dict stores the source document's id under this key (and two others)
OPERATORS = {FilterOperator.EQ: "=", FilterOperator.NE: "!=", FilterOperator.GT: ">", FilterOperator.GTE: ">=",
             FilterOperator.LT: "<", FilterOperator.LTE: "<=", FilterOperator.TEXT_MATCH: "contains"}
VECTOR_SIGNALS = ("dense", "colbert")  # what `alpha` weighs; sparse and bm25 get 1 - alpha


class HsearchVectorStore(BasePydanticVectorStore):
    """A collection as a LlamaIndex vector store. `collection`: an open `Collection`, or a folder, opened
    with the bundled model and created if missing (open it yourself for another model or encoder)."""

    stores_text: bool = True
    is_embedding_query: bool = False  # the retriever hands over query_str; hsearch encodes it
    flat_metadata: bool = False  # metadata is stored as JSON: nested values are kept (filters read top-level keys)
    default_mode: str = "dense"
    hybrid_mode: str = "dense+sparse"

    _collection: Collection = PrivateAttr()

    def __init__(self, collection: Collection | str | Path, **fields: Any):
        super().__init__(**fields)
        self._collection = collection if isinstance(collection, Collection) else open_collection(collection,
                                                                                                   create=True)

    @classmethod
    def class_name(cls) -> str:
        return "HsearchVectorStore"

    @property
    def client(self) -> Collection:
        return self._collection

    # ---- writing ----------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Add or replace nodes (a known node id is replaced); their embeddings are not used."""
        docs = {}
        for node in nodes:  # a node id twice in one call: the last one wins
            text = node.get_content(metadata_mode=MetadataMode.NONE)
            if not text.strip():
                raise InputError(f"node {node.node_id!r} has no text; hsearch indexes text (and encodes it itself)")
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            docs.pop(node.node_id, None)
            docs[node.node_id] = {"id": node.node_id, "text": text, "metadata": meta}
        if docs:
            self._collection.add(list(docs.values()))
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        """Delete every node of the source document `ref_doc_id`."""
        ids = self._collection.ids(where=[(REF_DOC_ID, "=", str(ref_doc_id))])
        if ids:
            self._collection.delete(ids)

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **kwargs: Any) -> None:
        """Delete the nodes with these ids that match `filters` (either left out: no condition)."""
        ids = self._matching(node_ids, filters)
        if ids:
            self._collection.delete(ids)

    def clear(self) -> None:
        """Delete every node."""
        self.delete_nodes()

    # ---- reading ----------------------------------------------------------------------------
    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes with these ids that match `filters`, in the order of `node_ids` (unknown ids left out)."""
        found = (self._node(i) for i in self._matching(node_ids, filters))
        return [node for node in found if node is not None]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Search with `query.query_str` (required: a query embedding alone cannot be searched, the
        collection's model encodes the text). kwargs: `Collection.search` options, which win."""
        if not query.query_str or not query.query_str.strip():
            raise InputError("hsearch encodes the query text itself: VectorStoreQuery.query_str is needed "
                             "(a query_embedding alone is not used)")
        options = dict(kwargs)
        mode = options.pop("mode", None) or self._mode(query.mode)
        where = (native(options.pop("where", None)) + _where(query.filters)
                 + _one_id("doc_ids", REF_DOC_ID, query.doc_ids) + _one_id("node_ids", "id", query.node_ids))
        k = query.similarity_top_k
        if query.mode == VectorStoreQueryMode.HYBRID:
            k = query.hybrid_top_k or k
            if query.alpha is not None and "weights" not in options:
                if not 0 <= query.alpha <= 1:
                    raise InputError(f"alpha must be between 0 (lexical only) and 1 (vectors only), got {query.alpha}")
                options["weights"] = {s: query.alpha if s in VECTOR_SIGNALS else 1 - query.alpha
                                      for s in parse_mode(mode.split("@")[0])}
        hits = self._collection.search(query.query_str, mode=mode, k=k, where=where, **options)
        nodes, scores = [], []
        for hit in hits:
            node = self._node(hit.id)
            if node is not None:  # None: deleted since the search read its snapshot
                nodes.append(node)
                scores.append(hit.score)
        return VectorStoreQueryResult(nodes=nodes, similarities=scores, ids=[n.node_id for n in nodes])

    def _mode(self, mode: VectorStoreQueryMode) -> str:
        modes = {VectorStoreQueryMode.DEFAULT: self.default_mode, VectorStoreQueryMode.HYBRID: self.hybrid_mode,
                 VectorStoreQueryMode.SPARSE: "sparse", VectorStoreQueryMode.TEXT_SEARCH: "bm25"}
        if mode not in modes:
            raise InputError(f"query mode {mode.value!r} is not offered by hsearch; use default ({self.default_mode}), "
                             f"hybrid ({self.hybrid_mode}), sparse or text_search (bm25), or pass mode='...'")
        return modes[mode]

    def _matching(self, node_ids, filters) -> list[str]:
        if filters is None:
            return self._collection.ids() if node_ids is None else [str(i) for i in node_ids]
        matched = self._collection.ids(where=_where(filters))
        if node_ids is None:
            return matched
        keep = set(matched)
        return [str(i) for i in node_ids if str(i) in keep]

    def _node(self, doc_id: str) -> BaseNode | None:
        d = self._collection.get(doc_id)
        if d is None:
            return None
        if "_node_content" not in d["metadata"]:  # indexed by hsearch itself, not through this store
            return TextNode(id_=d["id"], text=d["text"], metadata=d["metadata"])
        return metadata_dict_to_node(d["metadata"], text=d["text"])


def _where(filters: MetadataFilters | None) -> list[tuple[str, str, str]]:
    """LlamaIndex filters as hsearch where conditions (AND-ed), or an InputError naming what cannot be mapped."""
    if filters is None:
        return []
    items = filters.filters
    if filters.condition == FilterCondition.NOT or (filters.condition == FilterCondition.OR and len(items) > 1):
        raise InputError(f"hsearch's where AND-s its conditions; it cannot express {filters.condition.value.upper()} "
                         "over several filters: run one query per branch, or filter with AND")
    out = []
    for f in items:
        out += _where(f) if isinstance(f, MetadataFilters) else _condition(f)
    return out


def _condition(f: MetadataFilter) -> list[tuple[str, str, str]]:
    key = REF_DOC_ID if f.key == "doc_id" else f.key  # LlamaIndex's doc_id: the source document's id, stored twice
    if f.operator in OPERATORS:
        return condition(key, OPERATORS[f.operator], f.value)
    values = f.value if isinstance(f.value, list) else [f.value]
    if f.operator == FilterOperator.IN and len(values) == 1:
        return condition(key, "=", values[0])
    if f.operator == FilterOperator.NIN:
        return [c for v in values for c in condition(key, "!=", v)]
    raise InputError(f"filter {f.key} {f.operator.value} {f.value!r}: hsearch maps EQ, NE, GT, GTE, LT, LTE, "
                     "TEXT_MATCH, IN with one value and NIN to its where (AND-ed); filter otherwise after retrieval")


def _one_id(name: str, field: str, ids: list[str] | None) -> list[tuple[str, str, str]]:
    if not ids:  # None or []: LlamaIndex's own stores read both as "no restriction"
        return []
    if len(ids) > 1:
        raise InputError(f"VectorStoreQuery.{name} with {len(ids)} ids: hsearch's where has no OR, so it takes one; "
                         "filter on a metadata field they share, or query once per id")
    return [(field, "=", str(ids[0]))]
