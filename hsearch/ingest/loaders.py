"""Turn a path into documents: a folder of text files (recursively) or a BEIR-style corpus.jsonl.

Every document gets a stable id (the corpus `_id`, or the file path relative to the indexed folder)
and a content hash, so a re-run only encodes what is new or changed.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from hsearch.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ".markdown", ".csv", ".tsv", ".log", ".tex", ".org", ".xml",
                 ".yaml", ".yml", ".toml", ".ini", ".cfg", ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp",
                 ".go", ".rs", ".sh", ".sql", ".css"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".hsearch", ".venv", ".tox"}


@dataclass
class Document:
    id: str
    text: str
    title: str = ""
    path: str | None = None
    metadata: dict = field(default_factory=dict)
    hash: str = ""

    def __post_init__(self):
        if not self.hash:
            payload = json.dumps([self.title, self.text, self.metadata], sort_keys=True, ensure_ascii=False)
            self.hash = hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass
class LoadStats:
    files: int = 0
    documents: int = 0
    skipped_binary: int = 0
    skipped_empty: int = 0
    decode_errors: int = 0  # files decoded with replacement characters


def load_path(path: str | Path, stats: LoadStats | None = None) -> Iterator[Document]:
    """Documents under `path`: a folder (recursive), a .jsonl corpus, or a single text file."""
    stats = stats if stats is not None else LoadStats()
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist; pass a folder of documents or a corpus.jsonl file")
    if p.is_file():
        root = p.parent
        files = [p]
    else:
        root = p
        files = sorted(f for f in p.rglob("*") if f.is_file() and not (set(f.relative_to(p).parts[:-1]) & SKIP_DIRS))
    for f in files:
        stats.files += 1
        for doc in _load_file(f, root, stats):
            if doc.text.strip():
                stats.documents += 1
                yield doc
            else:
                stats.skipped_empty += 1


def _load_file(f: Path, root: Path, stats: LoadStats) -> Iterator[Document]:
    rel = f.relative_to(root).as_posix()
    suffix = f.suffix.lower()
    raw = f.read_bytes()
    if _looks_binary(raw):
        stats.skipped_binary += 1
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        stats.decode_errors += 1
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _is_jsonl(text)):
        yield from _json_records(text.splitlines(), rel)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            yield Document(id=rel, text=text, path=rel)
            return
        yield from _json_records(data if isinstance(data, list) else [data], rel)
    elif suffix in HTML_SUFFIXES:
        title, body = html_to_text(text)
        yield Document(id=rel, text=body, title=title, path=rel)
    else:
        yield Document(id=rel, text=text, path=rel)


def _json_records(records, rel: str) -> Iterator[Document]:
    for n, rec in enumerate(records, 1):
        if isinstance(rec, str):
            if not rec.strip():
                continue
            try:
                rec = json.loads(rec)
            except json.JSONDecodeError as e:
                raise InputError(f"{rel} line {n} is not valid JSON ({e.msg}); fix the line or remove it") from e
        if not isinstance(rec, dict):
            raise InputError(f"{rel} record {n} is not a JSON object; each record needs at least a 'text' field")
        text = rec.get("text", rec.get("contents", ""))
        if not isinstance(text, str):
            raise InputError(f"{rel} record {n}: 'text' must be a string")
        doc_id = str(rec.get("_id", rec.get("id", f"{rel}#{n}")))
        title = str(rec.get("title", "") or "")
        meta = {k: v for k, v in rec.items() if k not in ("_id", "id", "title", "text", "contents")}
        yield Document(id=doc_id, text=text, title=title, path=rel, metadata=meta)


def _is_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines()[:3] if ln.strip()]
    return len(lines) > 1 and all(ln.lstrip().startswith("{") and ln.rstrip().endswith("}") for ln in lines)


def _looks_binary(raw: bytes) -> bool:
    head = raw[:8192]
    return b"\x00" in head


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.title, self._skip, self._in_title = [], "", 0, False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page; scripts and styles dropped, blocks kept as lines."""
    parser = _HTMLText()
    parser.feed(html)
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return parser.title.strip(), text
