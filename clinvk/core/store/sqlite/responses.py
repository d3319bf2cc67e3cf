"""Stored responses in the SQLite store file (migration ``004_stored_responses.sql``)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from clinvk.core.errors import StoreError
from clinvk.core.jobs.responses import ResponseRecord


class SqliteResponseTable:
    """Thread-safe (one connection per process, behind a lock)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(path), timeout=busy_timeout,
                                         check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the stored responses in {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def save(self, record: ResponseRecord) -> None:
        """Insert, or replace the record with the same id (a finished foreground turn)."""
        created = record.created_epoch or time.time()
        body = json.dumps(record.body, ensure_ascii=False) if record.body is not None else None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO stored_responses (id, owner, job_id, session_id, "
                "created_epoch, request, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.owner, record.job_id, record.session_id, created,
                 json.dumps(record.request, ensure_ascii=False), body))

    def get(self, record_id: str) -> ResponseRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM stored_responses WHERE id = ?",
                                     (record_id,)).fetchone()
        if row is None:
            return None
        return ResponseRecord(
            id=row["id"], owner=row["owner"], request=json.loads(row["request"]),
            job_id=row["job_id"], session_id=row["session_id"],
            body=json.loads(row["body"]) if row["body"] else None,
            created_epoch=row["created_epoch"])

    def delete(self, record_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM stored_responses WHERE id = ?", (record_id,))

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop records older than the age or beyond the newest ``max_count``."""
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM stored_responses WHERE created_epoch < ? OR id NOT IN "
                "(SELECT id FROM stored_responses ORDER BY created_epoch DESC LIMIT ?)",
                (time.time() - max_age_secs, max_count))
            return cur.rowcount
