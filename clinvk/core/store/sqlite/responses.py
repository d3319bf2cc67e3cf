"""Stored responses in the SQLite store file (migration ``004_stored_responses.sql``).

Like the usage ledger, the table is read and written through the session store's own
connections and write lock, so a stored turn commits like the session writes around it
(WAL, ``synchronous=NORMAL``) and a failure is the store's error (``StoreUnavailable``
when the file cannot be read) rather than a bare SQLite exception.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from clinvk.core.jobs.responses import ResponseRecord

if TYPE_CHECKING:
    from clinvk.core.store.sqlite.database import SqliteDatabase

__all__ = ["SqliteResponseTable"]


class SqliteResponseTable:
    """Thread-safe: each thread uses its own connection of the store's database."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database  # the session database: migrated before this opens

    def close(self) -> None:
        """Nothing of its own to close: the connections are the store's."""

    def save(self, record: ResponseRecord) -> None:
        """Insert, or replace the record with the same id (a finished foreground turn)."""
        created = record.created_epoch or time.time()
        body = json.dumps(record.body, ensure_ascii=False) if record.body is not None else None
        with self._db._guard("store a response"), self._db._write_lock:
            self._db._conn().execute(
                "INSERT OR REPLACE INTO stored_responses (id, owner, job_id, session_id, "
                "created_epoch, request, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.owner, record.job_id, record.session_id, created,
                 json.dumps(record.request, ensure_ascii=False), body))

    def get(self, record_id: str) -> ResponseRecord | None:
        with self._db._guard("read a stored response"):
            row = self._db._conn().execute(
                "SELECT id, owner, request, job_id, session_id, body, created_epoch "
                "FROM stored_responses WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            return None
        rid, owner, request, job_id, session_id, body, created = row
        return ResponseRecord(id=rid, owner=owner, request=json.loads(request), job_id=job_id,
                              session_id=session_id, body=json.loads(body) if body else None,
                              created_epoch=created)

    def delete(self, record_id: str) -> None:
        with self._db._guard("delete a stored response"), self._db._write_lock:
            self._db._conn().execute("DELETE FROM stored_responses WHERE id = ?", (record_id,))

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop records older than the age or beyond the newest ``max_count``."""
        with self._db._guard("prune stored responses"), self._db._write_lock:
            cur = self._db._conn().execute(
                "DELETE FROM stored_responses WHERE created_epoch < ? OR id NOT IN "
                "(SELECT id FROM stored_responses ORDER BY created_epoch DESC LIMIT ?)",
                (time.time() - max_age_secs, max_count))
            return cur.rowcount
