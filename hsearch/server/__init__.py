"""`hsearch serve`: one warm process that answers queries, writes and embeddings over HTTP.

Imports nothing heavy: `hsearch.server.app` (FastAPI) is imported only by `hsearch serve` and by tests,
`hsearch.server.client` (stdlib only) by `hsearch query --server`.
"""
