"""hsearch: hybrid search (dense + learned sparse + multi-vector + BM25) from one encoder pass."""
from hsearch.errors import CollectionError, HsearchError, InputError, ModelError
from hsearch.types import Encoded, Hit

__version__ = "0.1.0"


def __getattr__(name):  # the facade imports torch-heavy code; keep `import hsearch` instant
    if name in ("Collection", "open_collection"):
        from hsearch import engine

        return getattr(engine, name)
    raise AttributeError(name)


__all__ = ["Collection", "open_collection", "Encoded", "Hit", "HsearchError", "InputError", "ModelError",
           "CollectionError", "__version__"]
