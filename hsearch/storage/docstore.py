"""Documents, chunks and metadata in SQLite (tables made and rows inserted through sqlite-utils).

Rows are only ever added by a writer; which rows are live is decided by the manifest (a row's
segment must be listed and its doc row not tombstoned). Rows left by an interrupted run are
invisible and removed by the next writer.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from hsearch.errors import CollectionError, InputError


class DocStore:
    def __init__(self, path: Path):
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")  # readers keep a snapshot while a writer commits
            conn.execute("select 1 from sqlite_master limit 1").fetchall()
            self.conn = conn
        except sqlite3.DatabaseError as e:
            raise CollectionError(f"document store {path} is unreadable ({e}); rebuild the collection") from None
        self._create()

    @property
    def db(self):
        """sqlite-utils over the same connection, for writes; imported only then (it pulls in pandas where that
        is installed: a quarter of a second that a query process does not need)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def _create(self):
        if not self.conn.execute("select 1 from sqlite_master where type='table' and name='docs'").fetchall():
            db = self.db
            db["docs"].create({"row": int, "doc_id": str, "segment": str, "source": str, "path": str,
                                    "title": str, "hash": str, "metadata": str, "n_chunks": int}, pk="row")
            db["docs"].create_index(["doc_id"])
            db["chunks"].create({"chunk_id": int, "doc_row": int, "chunk_no": int, "text": str,
                                      "start": int, "end": int}, pk="chunk_id")
            db["chunks"].create_index(["doc_row"])

    def next_doc_row(self) -> int:
        row = self.conn.execute("select max(row) from docs").fetchone()[0]
        return (row or 0) + 1

    def insert(self, docs: list[dict], chunks: list[dict]) -> None:
        db = self.db
        with self.conn:
            db["docs"].insert_all(docs, batch_size=1000)
            db["chunks"].insert_all(chunks, batch_size=1000)

    def live_docs(self, segments: list[str], deleted_rows: np.ndarray) -> dict[str, tuple[int, str, str]]:
        """{doc_id: (row, hash, source)} of live documents."""
        if not segments:
            return {}
        marks = ",".join("?" * len(segments))
        dead = set(deleted_rows.tolist())
        sql = f"select row, doc_id, hash, source from docs where segment in ({marks})"
        return {d: (r, h, src) for r, d, h, src in self.conn.execute(sql, list(segments)) if r not in dead}

    def document(self, doc_id: str, segments: list[str], deleted_rows: np.ndarray) -> dict | None:
        """The live document `doc_id` (its fields and its text joined from its chunks, title left out), or None."""
        if not segments:
            return None
        marks = ",".join("?" * len(segments))
        dead = set(deleted_rows.tolist())
        sql = (f"select row, path, title, metadata from docs where doc_id = ? and segment in ({marks}) "
               "order by row desc")
        live = [r for r in self.conn.execute(sql, [doc_id, *segments]) if r[0] not in dead]
        if not live:
            return None
        row, path, title, meta = live[0]
        text, end = "", None
        # chunks overlap (and a long-context collection holds two views of the text): keep each character once
        for c_text, c_start, c_end in self.conn.execute(
                "select text, start, end from chunks where doc_row = ? order by start, end", [row]):
            if end is None:
                text, end = c_text, c_end
            elif c_end > end:
                text += c_text[max(0, end - c_start):]
                end = c_end
        if title and text.startswith(title + "\n"):  # the writer indexes "title\ntext" (hsearch/writer.py)
            text = text[len(title) + 1:]
        return {"id": doc_id, "title": title or "", "path": path, "text": text, "metadata": json.loads(meta or "{}")}

    def chunk_ids_of_rows(self, rows) -> np.ndarray:
        rows = list(rows)
        out = []
        for s in range(0, len(rows), 900):
            part = rows[s:s + 900]
            marks = ",".join("?" * len(part))
            out += [r[0] for r in self.conn.execute(f"select chunk_id from chunks where doc_row in ({marks})", part)]
        return np.asarray(out, dtype=np.int64)

    def chunks(self, chunk_ids) -> dict[int, dict]:
        """chunk id -> {text, doc fields} for the given chunks."""
        ids = [int(c) for c in chunk_ids]
        out = {}
        for s in range(0, len(ids), 900):
            part = ids[s:s + 900]
            marks = ",".join("?" * len(part))
            sql = (f"select c.chunk_id, c.chunk_no, c.text, d.doc_id, d.path, d.title, d.metadata, d.row "
                   f"from chunks c join docs d on d.row = c.doc_row where c.chunk_id in ({marks})")
            for cid, no, text, doc_id, path, title, meta, row in self.conn.execute(sql, part):
                out[cid] = {"chunk_no": no, "text": text, "doc_id": doc_id, "path": path, "title": title,
                            "metadata": json.loads(meta) if meta and meta != "{}" else {}, "row": row}
        return out

    def chunk_records(self, start: int, end: int) -> list[tuple]:
        """(chunk id - start, chunk_no, text, doc row, doc_id, path, title, metadata) of the chunks with ids in
        [start, end): a segment's hit fields, for a merge that writes them (hsearch/storage/hitcols.py)."""
        sql = ("select c.chunk_id - ?, c.chunk_no, c.text, d.row, d.doc_id, d.path, d.title, d.metadata "
               "from chunks c join docs d on d.row = c.doc_row where c.chunk_id >= ? and c.chunk_id < ?")
        return self.conn.execute(sql, [start, start, end]).fetchall()

    def filtered_chunk_ids(self, where: list[tuple[str, str, str]]) -> np.ndarray:
        """Sorted chunk ids whose document matches every (field, op, value) condition.

        Fields: path, id, title, or a metadata key. Ops: = != < > <= >= and ~ (glob pattern).
        """
        clauses, args = [], []
        for fld, op, value in where:
            columns = {"path": "d.path", "id": "d.doc_id", "doc_id": "d.doc_id", "title": "d.title"}
            col, col_args = (columns[fld], []) if fld in columns else ("json_extract(d.metadata, ?)", [f"$.{fld}"])
            if op == "~":
                clauses.append(f"{col} glob ?")
                args += col_args + [value]
            elif op in ("=", "!="):  # compare as text so that lang=de and year=2020 both work
                clauses.append(f"cast({col} as text) {op} ?")
                args += col_args + [value]
            elif op in ("<", ">", "<=", ">="):
                try:
                    number = float(value)
                except ValueError:
                    raise InputError(f"--where {fld}{op}{value}: '{value}' is not a number") from None
                clauses.append(f"cast({col} as real) {op} ?")
                args += col_args + [number]
            else:
                raise InputError(f"unknown --where operator {op!r}; use = != < > <= >= or ~ (glob)")
        sql = "select c.chunk_id from chunks c join docs d on d.row = c.doc_row where " + " and ".join(clauses)
        try:
            ids = [r[0] for r in self.conn.execute(sql, args)]
        except sqlite3.OperationalError as e:
            raise InputError(f"bad --where filter ({e})") from None
        return np.asarray(sorted(ids), dtype=np.int64)

    def purge_texts(self, rows: np.ndarray) -> None:
        """Remove the chunk texts of (deleted) document rows and hand the freed pages back to the disk.
        The document rows stay: tombstones name them, and their row numbers must never be reused."""
        rows = [int(r) for r in rows]
        with self.conn:
            for s in range(0, len(rows), 900):
                part = rows[s:s + 900]
                self.conn.execute(f"delete from chunks where doc_row in ({','.join('?' * len(part))})", part)
        self.conn.execute("vacuum")
        self.conn.execute("pragma wal_checkpoint(truncate)")  # else the old pages live on in the WAL file

    def delete_rows_not_in(self, segments: list[str]) -> None:
        """Remove rows of interrupted runs (their segment never reached the manifest)."""
        marks = ",".join("?" * len(segments)) or "''"
        with self.conn:
            self.conn.execute(f"delete from chunks where doc_row in (select row from docs where segment not in ({marks}))",
                            segments)
            self.conn.execute(f"delete from docs where segment not in ({marks})", segments)
