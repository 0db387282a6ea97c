"""One base error; every subclass message says what was wrong and what to do."""


class HsearchError(Exception):
    """Base class of every error hsearch raises on purpose. The CLI prints these without a traceback."""


class InputError(HsearchError, ValueError):
    """Bad user input: an empty query, a non-string text, an unknown option value."""


class ModelError(HsearchError):
    """A model could not be found or loaded, or lacks what was asked of it."""


class CollectionError(HsearchError):
    """A collection is missing, corrupted, or was built with other settings."""


class ClusterError(HsearchError):
    """A Ray cluster cannot encode as this process would: its workers load other model files, or lost texts."""


class StaleSnapshot(CollectionError):
    """A query's snapshot met a chunk that a later `optimize` has purged: run it again on the new snapshot."""
