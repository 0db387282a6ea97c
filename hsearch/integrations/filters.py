"""A framework's metadata comparison as hsearch `where` conditions: (field, op, value) tuples, AND-ed,
as `Collection.search` takes them. Shared by both adapters; imports no framework.

hsearch compares `=` and `!=` as text and `< > <= >=` as numbers (hsearch/storage/docstore.py). So that
a number matches whether it was stored as 3 or 3.0, equality with a number becomes `>= n and <= n`; a
boolean is stored as JSON true/false, which SQLite reads as 1/0. A document without the field never
matches, `!=` included.
"""
from __future__ import annotations

from hsearch.errors import InputError
from hsearch.query.plan import parse_where

# where reads these names as the document's own fields, not as metadata keys (hsearch/storage/docstore.py)
OWN_FIELDS = ("id", "doc_id", "path", "title")
OPS = ("=", "!=", "<", ">", "<=", ">=", "contains")


def condition(key: str, op: str, value) -> list[tuple[str, str, str]]:
    """`key op value` over a metadata key; op is one of OPS ("contains": a substring, case-sensitive)."""
    if key in OWN_FIELDS:
        raise InputError(f"cannot filter on metadata key {key!r}: hsearch's where reads {', '.join(OWN_FIELDS)} as "
                         "the document's own fields; rename that metadata key, or pass where=... to filter on "
                         "hsearch's fields")
    if op not in OPS:
        raise InputError(f"unknown filter operator {op!r}; hsearch maps {', '.join(OPS)}")
    if value is None or isinstance(value, (list, tuple, set, dict)):
        raise InputError(f"filter {key} {op} {value!r}: give one string, number or boolean")
    if op == "contains":
        if not isinstance(value, str):
            raise InputError(f"filter {key} contains {value!r}: a substring match needs a string")
        return [(key, "~", f"*{_glob_literal(value)}*")]
    if op in ("<", ">", "<=", ">="):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"filter {key} {op} {value!r}: {op} compares numbers; give an int or a float")
        return [(key, op, repr(value))]
    if isinstance(value, bool):
        return [(key, op, "1" if value else "0")]
    if isinstance(value, (int, float)) and op == "=":
        return [(key, ">=", repr(value)), (key, "<=", repr(value))]
    return [(key, op, str(value))]


def native(where) -> list[tuple[str, str, str]]:
    """hsearch's own `where` as a search takes it (["lang=de", "year>2019"], or tuples) as tuples, so that
    framework conditions can be added to it."""
    where = list(where or ())
    return list(parse_where(where)) if where and isinstance(where[0], str) else where


def _glob_literal(text: str) -> str:
    """`text` matched literally inside a SQLite GLOB pattern (its wildcards bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
