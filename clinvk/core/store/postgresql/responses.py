"""Stored responses in PostgreSQL (migration ``004_stored_responses.sql``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from clinvk.core.jobs.responses import ResponseRecord

if TYPE_CHECKING:
    from clinvk.core.store.postgresql.database import PostgresDatabase

__all__ = ["PostgresResponseTable"]


class PostgresResponseTable:
    """Stored responses over the store's pool; every method is one transaction."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def close(self) -> None:
        """Nothing of its own to close: the pool belongs to the store."""

    def save(self, record: ResponseRecord) -> None:
        """Insert, or replace the record with the same id (a finished foreground turn)."""
        body = json.dumps(record.body, ensure_ascii=False) if record.body is not None else None
        row = (record.id, record.owner, record.job_id, record.session_id,
               record.created_epoch or time.time(),
               json.dumps(record.request, ensure_ascii=False), body)
        self._db.run("store a response", lambda conn: conn.execute(
            "INSERT INTO stored_responses (id, owner, job_id, session_id, created_epoch, "
            "request, body) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET owner = EXCLUDED.owner, job_id = EXCLUDED.job_id, "
            "session_id = EXCLUDED.session_id, created_epoch = EXCLUDED.created_epoch, "
            "request = EXCLUDED.request, body = EXCLUDED.body", row))

    def get(self, record_id: str) -> ResponseRecord | None:
        def read(conn: Any) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute("SELECT * FROM stored_responses WHERE id = %s",
                                   (record_id,)).fetchone()

        row = self._db.run("read a stored response", read)
        if row is None:
            return None
        return ResponseRecord(
            id=row["id"], owner=row["owner"], request=json.loads(row["request"]),
            job_id=row["job_id"], session_id=row["session_id"],
            body=json.loads(row["body"]) if row["body"] else None,
            created_epoch=row["created_epoch"])

    def delete(self, record_id: str) -> None:
        self._db.run("delete a stored response", lambda conn: conn.execute(
            "DELETE FROM stored_responses WHERE id = %s", (record_id,)))

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop records older than the age or beyond the newest ``max_count``."""
        return int(self._db.run("prune stored responses", lambda conn: conn.execute(
            "DELETE FROM stored_responses WHERE created_epoch < %s OR id NOT IN "
            "(SELECT id FROM stored_responses ORDER BY created_epoch DESC LIMIT %s)",
            (time.time() - max_age_secs, max_count)).rowcount))
