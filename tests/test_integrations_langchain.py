"""The LangChain adapter (hsearch/integrations/langchain.py): LangChain's own standard vector-store suite
(langchain-tests), then what it does not cover: hsearch's search options, filters, retrievers, long texts.
The collections encode with the suite's one fake encoder (hsearch/testing.py)."""
import pytest

pytest.importorskip("langchain_core")
langchain_tests = pytest.importorskip("langchain_tests.integration_tests")

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever

from hsearch.config import CollectionConfig
from hsearch.engine import open_collection
from hsearch.errors import InputError
from hsearch.integrations.langchain import HsearchVectorStore
from hsearch.testing import FakeEncoder

# The standard suite's async tests carry no asyncio mark (LangChain's packages run pytest-asyncio in auto
# mode); marking the whole module also marks its sync tests, which pytest-asyncio only warns about.
pytestmark = [pytest.mark.asyncio,
              pytest.mark.filterwarnings("ignore:.*marked with '@pytest.mark.asyncio' but it is not an async")]


@pytest.fixture(scope="module")
def encoder():
    return FakeEncoder(dim=16, colbert_dim=16, name="word-hash-test")


@pytest.fixture()
def collection(tmp_path, encoder):
    return open_collection(tmp_path / "col", create=True, encoder=encoder)


class TestStandardSuite(langchain_tests.VectorStoreIntegrationTests):
    """LangChain's tests of every vector store: add, upsert by id, delete, get_by_ids, sync and async."""

    @pytest.fixture()
    def vectorstore(self, collection) -> VectorStore:
        # the suite offers a fake LangChain embedding (get_embeddings); hsearch encodes with its own model
        return HsearchVectorStore(collection)


ANIMALS = [("Dogs run in the park every morning.", {"lang": "en", "year": 2020, "pet": True}, "dog"),
           ("Cats sleep most of the day and purr.", {"lang": "en", "year": 2018, "pet": True}, "cat"),
           ("Hunde laufen jeden Morgen im Park.", {"lang": "de", "year": 2021, "pet": True}, "hund"),
           ("Wolves hunt in packs at night.", {"lang": "en", "year": 2021, "pet": False}, "wolf")]


@pytest.fixture()
def store(collection):
    s = HsearchVectorStore(collection)
    texts, metadatas, ids = zip(*ANIMALS)
    assert s.add_texts(texts, list(metadatas), ids=list(ids)) == list(ids)
    return s


def ids(docs):
    return [d.id for d in docs]


def test_search_options_reach_the_collection(store, collection):
    for options in ({"mode": "dense"}, {"mode": "sparse+bm25", "fusion": "rrf"},
                    {"mode": "dense+sparse", "weights": {"dense": 1.0, "sparse": 0.0}}, {"where": ["year>2020"]}):
        got = store.similarity_search_with_score("dogs in the park", k=3, **options)
        want = collection.search("dogs in the park", k=3, **options)  # no mode: the collection's default, as the store
        assert [(d.id, s) for d, s in got] == [(h.id, h.score) for h in want], options
    rrf = store.similarity_search_with_score("dogs in the park", k=1, mode="dense+bm25", fusion="rrf",
                                             weights={"dense": 1.0, "bm25": 1.0})
    assert rrf[0][0].id == "dog" and rrf[0][1] == pytest.approx(2 / 61)  # first in both lists: 2 / (60 + 1)


def test_mode_of_the_store_and_of_one_search(collection, store):
    bm25 = HsearchVectorStore(collection, mode="bm25")
    assert bm25.similarity_search("zebras", k=2) == []  # BM25 retrieves only documents sharing a word
    assert len(bm25.similarity_search("zebras", k=2, mode="dense")) == 2  # a search's own mode wins
    assert ids(bm25.similarity_search("purr", k=4)) == ["cat"]


def test_where_and_filter_are_anded(store):
    assert ids(store.similarity_search("park", k=4, where=["lang=de"])) == ["hund"]
    assert set(ids(store.similarity_search("park", k=4, filter={"lang": "en", "pet": True}))) == {"dog", "cat"}
    assert ids(store.similarity_search("park", k=4, filter={"year": 2021.0}, where=["lang=en"])) == ["wolf"]
    assert ids(store.similarity_search("park", k=4, filter={"year": 2021}, where=[("lang", "=", "de")])) == ["hund"]
    assert store.similarity_search("park", k=4, filter={"lang": "fr"}) == []
    with pytest.raises(InputError, match="metadata equalities"):
        store.similarity_search("park", filter=[("lang", "de")])
    with pytest.raises(InputError, match="document's own fields"):  # hsearch's where reads 'title' as its own
        store.similarity_search("park", filter={"title": "x"})


def test_retriever_passes_search_kwargs(store):
    retriever = store.as_retriever(search_kwargs={"k": 2, "mode": "dense+sparse+bm25", "where": ["lang=en"]})
    assert isinstance(retriever, VectorStoreRetriever)
    docs = retriever.invoke("which animal runs in the park in the morning?")
    assert ids(docs)[0] == "dog" and len(docs) == 2 and all(d.metadata["lang"] == "en" for d in docs)
    assert docs[0] == Document(id="dog", page_content=ANIMALS[0][0], metadata=ANIMALS[0][1])


async def test_async_retriever(store):
    docs = await store.as_retriever(search_kwargs={"k": 1, "mode": "sparse"}).ainvoke("purr")
    assert ids(docs) == ["cat"]


def test_long_text_comes_back_whole(tmp_path, encoder):
    # cut into several passages by hsearch: a hit (and get_by_ids) still returns the text as it was added
    # (from its first token to its last: what lies outside them is not in any passage)
    col = open_collection(tmp_path / "c", create=True, encoder=encoder,
                          config=CollectionConfig(chunk_tokens=16, chunk_overlap=4))
    store = HsearchVectorStore(col)
    text = " ".join(f"word{i}" for i in range(100)) + "\n\n  the end\twith tabs"
    store.add_texts([text, "a short one"], ids=["long", "short"])
    assert col.info()["chunks"] > 5
    hit = store.similarity_search("word87 word88", k=1, mode="sparse")[0]
    assert hit == Document(id="long", page_content=text, metadata={})
    assert store.get_by_ids(["nope", "short", "long"]) == [Document(id="short", page_content="a short one"), hit]


def test_repeated_id_in_one_call_keeps_the_last(store):
    assert store.add_texts(["first text", "second text"], [{"n": 1}, {"n": 2}], ids=["x", "x"]) == ["x", "x"]
    assert store.get_by_ids(["x"]) == [Document(id="x", page_content="second text", metadata={"n": 2})]


def test_delete_everything_and_mismatched_lengths(store, collection):
    with pytest.raises(InputError, match="one of each per text"):
        store.add_texts(["a", "b"], metadatas=[{}])
    assert store.delete() is True
    assert collection.ids() == [] and store.similarity_search("park") == []


def test_from_texts_and_documents(collection):
    store = HsearchVectorStore.from_documents([Document(page_content="Owls hunt at night.", metadata={"a": 1})],
                                              embedding=None, collection=collection, mode="sparse")
    assert store.mode == "sparse" and store.similarity_search("owls", k=1)[0].metadata == {"a": 1}
    with pytest.raises(InputError, match="not with a LangChain Embeddings"):
        HsearchVectorStore.from_texts(["x"], embedding=object(), collection=collection)
    with pytest.raises(InputError, match="needs collection="):
        HsearchVectorStore.from_texts(["x"])


def test_readme_example(collection):
    # README, "LangChain / LlamaIndex", with the fake encoder's collection in place of the bundled model's
    store = HsearchVectorStore(collection, mode="dense+sparse")
    store.add_texts(["Cats sleep most of the day and purr."], metadatas=[{"lang": "en"}], ids=["cat"])
    [(doc, score)] = store.similarity_search_with_score("how long do cats sleep?", k=3, mode="dense+sparse+bm25",
                                                        where=["lang=en"])
    [hit] = collection.search("how long do cats sleep?", k=3, mode="dense+sparse+bm25", where=["lang=en"])
    assert doc.id == hit.id == "cat" and score == hit.score
    retriever = store.as_retriever(search_kwargs={"k": 3, "mode": "sparse", "filter": {"lang": "en"}})
    assert retriever.invoke("purring cats") == [
        Document(id="cat", page_content="Cats sleep most of the day and purr.", metadata={"lang": "en"})]
    assert store.as_retriever(search_kwargs={"filter": {"lang": "de"}}).invoke("purring cats") == []
