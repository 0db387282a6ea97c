"""A LangChain `VectorStore` over a collection (the `langchain` extra: langchain-core).

    from hsearch.integrations.langchain import HsearchVectorStore
    store = HsearchVectorStore(collection)              # an open Collection, or a folder
    store.add_texts(["Cats sleep all day."], metadatas=[{"lang": "en"}], ids=["cats"])
    store.similarity_search("how long do cats sleep?", k=4, mode="dense+sparse", where=["lang=en"])
    store.as_retriever(search_kwargs={"k": 3, "mode": "bm25"}).invoke("cats")

hsearch encodes texts and queries itself with the collection's model (dense, sparse and multi-vector
from one pass), so the store takes no LangChain `Embeddings`. Every LangChain document is one hsearch
document (its id, its text, its metadata); hsearch still cuts a text longer than the model's window
into passages, and a hit returns the whole document's text (from its first token to its last).

Search keyword arguments are `Collection.search`'s: `mode`, `where` (["lang=de", "year>2019"]),
`weights`, `fusion` ("weighted" or "rrf"), `normalize`, `depth`, `rrf_k`, `doc_score`; and LangChain's
`filter`, a dict of metadata equalities ({"lang": "de"}) AND-ed with `where`. Scores are hsearch's
fused scores (higher is better, not bounded), so there is no relevance-score function:
`similarity_search_with_relevance_scores` and the "similarity_score_threshold" retriever are not
offered; neither is maximal marginal relevance, which needs the vectors.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore

from hsearch.engine import Collection, open_collection
from hsearch.errors import InputError
from hsearch.integrations.filters import condition, native


class HsearchVectorStore(VectorStore):
    """A collection as a LangChain vector store. `collection`: an open `Collection`, or a folder, opened
    with the bundled model and created if missing (open it yourself for another model or encoder).
    `mode` and `search_options` (any `Collection.search` keyword) are the defaults of every search;
    a search's own keyword arguments override them."""

    def __init__(self, collection: Collection | str | Path, *, mode: str | None = None, **search_options: Any):
        self.collection = collection if isinstance(collection, Collection) else open_collection(collection, create=True)
        self.mode = mode
        self.search_options = search_options

    # ---- writing ----------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: Sequence[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Add or replace texts (a known id is replaced); returns their ids, new uuid4s where none is given."""
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{}] * len(texts)
        ids = list(ids) if ids is not None else [None] * len(texts)
        if not len(texts) == len(metadatas) == len(ids):
            raise InputError(f"{len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids; give one of each "
                             "per text")
        ids = [str(i) if i is not None else str(uuid.uuid4()) for i in ids]
        # a repeated id within one call: the last one wins, as if the texts were added one after another
        # (Collection.add keeps the first of a batch)
        last = {doc_id: n for n, doc_id in enumerate(ids)}
        docs = [{"id": ids[n], "text": texts[n], "metadata": dict(metadatas[n] or {})} for n in sorted(last.values())]
        if docs:
            self.collection.add(docs)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id (unknown ids are ignored); `ids=None` deletes every document."""
        ids = self.collection.ids() if ids is None else [str(i) for i in ids]
        if ids:
            self.collection.delete(ids)
        return True

    # ---- reading ----------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in that order; unknown ids are left out."""
        return [doc for doc in map(self._document, ids) if doc is not None]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k=k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, *, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """(document, hsearch's fused score) pairs, best first. kwargs: see the module docstring."""
        options = {**self.search_options, **kwargs}
        mode = options.pop("mode", self.mode)
        where = options.pop("where", None) or ()
        if filter:
            if not isinstance(filter, dict):
                raise InputError(f"filter must be a dict of metadata equalities such as {{'lang': 'de'}}, "
                                 f"not {type(filter).__name__}; use where=[...] for other comparisons")
            where = native(where) + [c for key, value in filter.items() for c in condition(key, "=", value)]
        hits = self.collection.search(query, mode=mode, k=k, where=where, **options)
        out = []
        for hit in hits:
            doc = self._document(hit.id)
            if doc is not None:  # None: deleted since the search read its snapshot
                out.append((doc, hit.score))
        return out

    def _document(self, doc_id: str) -> Document | None:
        d = self.collection.get(str(doc_id))
        return None if d is None else Document(id=d["id"], page_content=d["text"], metadata=d["metadata"])

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Any = None, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, collection: Collection | str | Path | None = None,
                   **kwargs: Any) -> HsearchVectorStore:
        """A store over `collection` (a `Collection` or a folder) holding `texts`. `embedding` must be None:
        the collection's model encodes. kwargs: the store's `mode` and search defaults."""
        if embedding is not None:
            raise InputError("hsearch encodes texts with its collection's own model (dense, sparse and multi-vector "
                             "in one pass), not with a LangChain Embeddings; pass embedding=None and choose the "
                             "model when creating the collection (open_collection(path, create=True, model=...))")
        if collection is None:
            raise InputError("from_texts needs collection=: an open hsearch Collection or a folder for one")
        store = cls(collection, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
