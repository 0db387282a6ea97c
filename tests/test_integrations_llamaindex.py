"""The LlamaIndex adapter (hsearch/integrations/llamaindex.py), driven through LlamaIndex's own classes:
VectorStoreIndex, its retriever, VectorStoreQuery and MetadataFilters. llama-index-core ships no standard
vector-store suite, so these are ours. The collections encode with the suite's one fake encoder
(hsearch/testing.py); LlamaIndex's embed model is its MockEmbedding, whose vectors the store never uses."""

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from hsearch.engine import open_collection
from hsearch.errors import InputError
from hsearch.integrations.llamaindex import HsearchVectorStore
from hsearch.testing import FakeEncoder

NO_EMBEDDINGS = MockEmbedding(embed_dim=1)


@pytest.fixture(scope="module")
def encoder():
    return FakeEncoder(dim=16, colbert_dim=16, name="word-hash-test")


@pytest.fixture()
def collection(tmp_path, encoder):
    return open_collection(tmp_path / "col", create=True, encoder=encoder)


def node(node_id, text, ref, **metadata):
    return TextNode(id_=node_id, text=text, metadata=metadata,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref)})


NODES = [node("dog-1", "Dogs run in the park every morning.", "dogs", lang="en", year=2020, tag="pets/dogs"),
         node("dog-2", "A dog fetches the ball in the park.", "dogs", lang="en", year=2022, tag="pets/dogs"),
         node("cat-1", "Cats sleep most of the day and purr.", "cats", lang="en", year=2018, tag="pets/cats"),
         node("hund-1", "Hunde laufen jeden Morgen im Park.", "hunde", lang="de", year=2021, tag="pets/dogs"),
         node("wolf-1", "Wolves hunt in packs at night.", "wolves", lang="en", year=2021, tag="wild*")]


@pytest.fixture()
def store(collection):
    s = HsearchVectorStore(collection)
    assert s.add(NODES) == [n.node_id for n in NODES]
    return s


@pytest.fixture()
def index(store):
    return VectorStoreIndex.from_vector_store(store, embed_model=NO_EMBEDDINGS)


def retrieved(index, query, **kwargs):
    return [n.node.node_id for n in index.as_retriever(**kwargs).retrieve(query)]


def test_documents_through_an_index_and_back(collection):
    # LlamaIndex splits the documents, hsearch encodes the nodes; delete_ref_doc removes one document's nodes
    store = HsearchVectorStore(collection)
    docs = [Document(text="Cats sleep most of the day. They purr when content.", id_="cats", metadata={"k": "c"}),
            Document(text="Dogs run in the park every morning.", id_="dogs", metadata={"k": "d"})]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=NO_EMBEDDINGS)
    hits = index.as_retriever(similarity_top_k=1).retrieve("how long do cats sleep?")
    assert len(hits) == 1 and hits[0].node.ref_doc_id == "cats" and hits[0].node.metadata == {"k": "c"}
    assert hits[0].node.text == docs[0].text and hits[0].score == collection.search(
        "how long do cats sleep?", mode="dense", k=1)[0].score
    index.delete_ref_doc("cats")
    assert [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=5).retrieve("cats sleep")] == ["dogs"]


def test_retrieved_node_is_the_added_node(index):
    got = index.as_retriever(similarity_top_k=1).retrieve("Cats sleep most of the day and purr.")[0].node
    want = NODES[2]
    assert (got.node_id, got.text, got.metadata, got.ref_doc_id) == (want.node_id, want.text, want.metadata, "cats")
    assert got.embedding is None  # LlamaIndex's mock vectors were never stored


@pytest.mark.parametrize("llama_mode, hsearch_mode", [("default", "dense"), ("hybrid", "dense+sparse"),
                                                      ("sparse", "sparse"), ("text_search", "bm25")])
def test_query_modes_map_to_hsearch_modes(index, collection, llama_mode, hsearch_mode):
    got = index.as_retriever(similarity_top_k=3, vector_store_query_mode=llama_mode).retrieve("dog in the park")
    want = collection.search("dog in the park", mode=hsearch_mode, k=3)
    assert [(n.node.node_id, n.score) for n in got] == [(h.id, h.score) for h in want]


def test_store_modes_and_search_options(collection, store):
    hybrid = HsearchVectorStore(collection, default_mode="bm25", hybrid_mode="dense+sparse+bm25")
    q = VectorStoreQuery(query_str="dog park", similarity_top_k=5)
    assert [n.node_id for n in hybrid.query(q).nodes] == [h.id for h in collection.search("dog park", mode="bm25", k=5)]
    hq = VectorStoreQuery(query_str="dog park", similarity_top_k=5, hybrid_top_k=2, mode=VectorStoreQueryMode.HYBRID)
    assert hybrid.query(hq).ids == [h.id for h in collection.search("dog park", mode="dense+sparse+bm25", k=2)]
    # hsearch options through a retriever's vector_store_kwargs
    got = retrieved(VectorStoreIndex.from_vector_store(store, embed_model=NO_EMBEDDINGS), "dog park",
                    similarity_top_k=5, vector_store_kwargs={"mode": "sparse+bm25", "fusion": "rrf",
                                                             "where": ["lang=en"]})
    assert got == [h.id for h in collection.search("dog park", mode="sparse+bm25", fusion="rrf", where=["lang=en"],
                                                   k=5)]


def test_alpha_weighs_vectors_against_words(store, collection):
    for alpha, weights in ((1.0, {"dense": 1.0, "sparse": 0.0}), (0.25, {"dense": 0.25, "sparse": 0.75})):
        q = VectorStoreQuery(query_str="dogs fetch", similarity_top_k=4, mode=VectorStoreQueryMode.HYBRID, alpha=alpha)
        res = store.query(q)
        want = collection.search("dogs fetch", mode="dense+sparse", weights=weights, k=4)
        assert list(zip(res.ids, res.similarities)) == [(h.id, h.score) for h in want]
    with pytest.raises(InputError, match="alpha must be between"):
        store.query(VectorStoreQuery(query_str="x", mode=VectorStoreQueryMode.HYBRID, alpha=2.0))


def F(key, value, op=FilterOperator.EQ):
    return MetadataFilter(key=key, value=value, operator=op)


@pytest.mark.parametrize("filters, want", [
    ([F("lang", "de")], {"hund-1"}),
    ([F("lang", "en"), F("year", 2021)], {"wolf-1"}),
    ([F("year", 2021.0)], {"hund-1", "wolf-1"}),  # stored as 2021: numbers compare as numbers
    ([F("lang", "en", FilterOperator.NE)], {"hund-1"}),
    ([F("year", 2021, FilterOperator.GT)], {"dog-2"}),
    ([F("year", 2021, FilterOperator.GTE)], {"dog-2", "hund-1", "wolf-1"}),
    ([F("year", 2020, FilterOperator.LT)], {"cat-1"}),
    ([F("year", 2020, FilterOperator.LTE)], {"cat-1", "dog-1"}),
    ([F("lang", ["de"], FilterOperator.IN)], {"hund-1"}),
    ([F("year", [2018, 2020, 2022], FilterOperator.NIN)], {"hund-1", "wolf-1"}),
    ([F("tag", "dogs", FilterOperator.TEXT_MATCH)], {"dog-1", "dog-2", "hund-1"}),
    ([F("tag", "d*", FilterOperator.TEXT_MATCH)], {"wolf-1"}),  # '*' is literal: only 'wild*' has 'd*'
    ([F("tag", "s?d", FilterOperator.TEXT_MATCH)], set()),  # '?' too ('pets/dogs' would match a wildcard)
    ([F("doc_id", "dogs")], {"dog-1", "dog-2"}),  # LlamaIndex's doc_id: the source document
    ([MetadataFilters(filters=[F("lang", "en"), F("year", 2020, FilterOperator.GT)]), F("tag", "pets/dogs")],
     {"dog-2"}),
])
def test_metadata_filters(index, filters, want):
    assert set(retrieved(index, "park", similarity_top_k=10, filters=MetadataFilters(filters=filters))) == want


def test_one_filter_under_or_is_fine_several_are_refused(store):
    one = MetadataFilters(filters=[F("lang", "de")], condition=FilterCondition.OR)
    assert store.query(VectorStoreQuery(query_str="park", similarity_top_k=9, filters=one)).ids == ["hund-1"]
    for condition in (FilterCondition.OR, FilterCondition.NOT):
        two = MetadataFilters(filters=[F("lang", "de"), F("year", 2018)], condition=condition)
        with pytest.raises(InputError, match="cannot express"):
            store.query(VectorStoreQuery(query_str="park", filters=two))


@pytest.mark.parametrize("bad, message", [
    (F("lang", ["de", "en"], FilterOperator.IN), "IN with one value"),
    (F("tag", "dogs", FilterOperator.CONTAINS), "IN with one value"),
    (F("tag", "DOGS", FilterOperator.TEXT_MATCH_INSENSITIVE), "IN with one value"),
    (F("lang", None, FilterOperator.IS_EMPTY), "IN with one value"),
    (F("year", "2020", FilterOperator.GT), "compares numbers"),
    (F("title", "x"), "document's own fields"),
])
def test_unmappable_filters_are_refused(store, bad, message):
    with pytest.raises(InputError, match=message):
        store.query(VectorStoreQuery(query_str="park", filters=MetadataFilters(filters=[bad])))


def test_refused_queries(store):
    with pytest.raises(InputError, match="query_str is needed"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 16, similarity_top_k=2))
    with pytest.raises(InputError, match="'mmr' is not offered"):
        store.query(VectorStoreQuery(query_str="park", mode=VectorStoreQueryMode.MMR))
    with pytest.raises(InputError, match="node_ids with 2 ids"):
        store.query(VectorStoreQuery(query_str="park", node_ids=["dog-1", "dog-2"]))
    with pytest.raises(InputError, match="has no text"):
        store.add([TextNode(id_="empty", text="  ")])


def test_node_and_doc_ids_narrow_the_query(store):
    assert store.query(VectorStoreQuery(query_str="park", similarity_top_k=9, node_ids=["cat-1"])).ids == ["cat-1"]
    assert set(store.query(VectorStoreQuery(query_str="park", similarity_top_k=9, doc_ids=["dogs"])).ids) == \
        {"dog-1", "dog-2"}
    assert len(store.query(VectorStoreQuery(query_str="park", similarity_top_k=9, node_ids=[])).ids) == 5


def test_get_delete_nodes_and_clear(store, collection):
    assert [n.node_id for n in store.get_nodes(["cat-1", "nope", "dog-1"])] == ["cat-1", "dog-1"]
    dogs = MetadataFilters(filters=[F("tag", "pets/dogs")])
    assert [n.node_id for n in store.get_nodes(filters=dogs)] == ["dog-1", "dog-2", "hund-1"]
    assert [n.node_id for n in store.get_nodes(["hund-1", "cat-1"], filters=dogs)] == ["hund-1"]
    store.delete_nodes(["dog-1", "cat-1"], filters=dogs)  # only dog-1 is both
    assert collection.ids() == ["cat-1", "dog-2", "hund-1", "wolf-1"]
    store.delete("hunde")
    assert collection.ids() == ["cat-1", "dog-2", "wolf-1"]
    store.clear()
    assert collection.ids() == [] and store.query(VectorStoreQuery(query_str="park", similarity_top_k=3)).ids == []


def test_replacing_a_node_and_reading_hsearch_own_documents(store, collection):
    store.add([node("cat-1", "Cats hunt mice at dawn.", "cats", lang="en"), node("cat-1", "Cats nap.", "cats")])
    assert [(n.text, n.metadata) for n in store.get_nodes(["cat-1"])] == [("Cats nap.", {})]  # the last one won
    collection.add([{"id": "plain", "text": "Owls hoot at night.", "kind": "bird"}])  # not added through LlamaIndex
    got = store.query(VectorStoreQuery(query_str="owls hoot", similarity_top_k=1, mode=VectorStoreQueryMode.SPARSE))
    assert isinstance(got.nodes[0], TextNode) and (got.nodes[0].node_id, got.nodes[0].text, got.nodes[0].metadata) \
        == ("plain", "Owls hoot at night.", {"kind": "bird"})


def test_readme_example(collection):
    # README, "LangChain / LlamaIndex", with the fake encoder's collection in place of the bundled model's
    store = HsearchVectorStore(collection)
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=1))
    index.insert_nodes([TextNode(id_="cat", text="Cats sleep most of the day and purr.", metadata={"lang": "en"}),
                        TextNode(id_="hund", text="Hunde schlafen im Park.", metadata={"lang": "de"})])
    retriever = index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid", alpha=0.7,
                                   filters=MetadataFilters(filters=[MetadataFilter(key="lang", value="en")]))
    nodes = retriever.retrieve("how long do cats sleep?")
    want = collection.search("how long do cats sleep?", mode="dense+sparse", weights={"dense": 0.7, "sparse": 1 - 0.7},
                             where=["lang=en"], k=3)
    assert [(n.node.node_id, n.score) for n in nodes] == [(h.id, h.score) for h in want] and len(want) == 1
    assert nodes[0].node.text == "Cats sleep most of the day and purr." and nodes[0].node.metadata == {"lang": "en"}
