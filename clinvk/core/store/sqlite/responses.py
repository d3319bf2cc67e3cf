"""Stored responses in the SQLite store file (migration ``004_stored_responses.sql``).

Like the usage ledger, the table is read and written through the session store's own
connections and write lock, so a stored turn commits like the session writes around it
(WAL, ``synchronous=NORMAL``) and a failure is the store's error (``StoreUnavailable``
when the file cannot be read) rather than a bare SQLite exception.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from clinvk.core.jobs.responses import ResponseRecord

if TYPE_CHECKING:
    from clinvk.core.store.sqlite.database import SqliteDatabase

__all__ = ["SqliteResponseTable"]


class SqliteResponseTable:
    """Thread-safe: reads use the thread's connection of the store's database, writes the
    store's write connection."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database  # the session database: migrated before this opens

    def close(self) -> None:
        """Nothing of its own to close: the connections are the store's."""

    def _execute(self, action: str, sql: str, params: tuple[Any, ...], *, write: bool = False
                 ) -> sqlite3.Cursor:
        """One statement: a read on this thread's connection, a write on the store's write
        connection, queued on its lock."""
        with self._db._guard(action):
            if not write:
                return self._db._conn().execute(sql, params)
            with self._db._write_lock:
                return self._db._writer_conn().execute(sql, params)

    def save(self, record: ResponseRecord) -> None:
        """Insert, or replace the record with the same id (a finished foreground turn)."""
        created = record.created_epoch or time.time()
        body = json.dumps(record.body, ensure_ascii=False) if record.body is not None else None
        self._execute(
            "store a response",
            "INSERT OR REPLACE INTO stored_responses (id, owner, job_id, session_id, "
            "created_epoch, request, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.id, record.owner, record.job_id, record.session_id, created,
             json.dumps(record.request, ensure_ascii=False), body), write=True)

    def get(self, record_id: str) -> ResponseRecord | None:
        row = self._execute(  # execute() steps to the one row: fetchone() only hands it over
            "read a stored response",
            "SELECT id, owner, request, job_id, session_id, body, created_epoch "
            "FROM stored_responses WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            return None
        rid, owner, request, job_id, session_id, body, created = row
        return ResponseRecord(id=rid, owner=owner, request=json.loads(request), job_id=job_id,
                              session_id=session_id, body=json.loads(body) if body else None,
                              created_epoch=created)

    def delete(self, record_id: str) -> None:
        self._execute("delete a stored response",
                      "DELETE FROM stored_responses WHERE id = ?", (record_id,), write=True)

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop records older than the age or beyond the newest ``max_count``."""
        return self._execute(
            "prune stored responses",
            "DELETE FROM stored_responses WHERE created_epoch < ? OR id NOT IN "
            "(SELECT id FROM stored_responses ORDER BY created_epoch DESC LIMIT ?)",
            (time.time() - max_age_secs, max_count), write=True).rowcount
