"""Adapters that let RAG frameworks use a collection: `hsearch.integrations.langchain` (a LangChain
`VectorStore`, the `langchain` extra) and `hsearch.integrations.llamaindex` (a LlamaIndex vector store,
the `llamaindex` extra). Import the one you use: this package imports neither framework.
"""
