"""The usage ledger's rows in the SQLite store file (migration ``005_usage_runs.sql``).

The table is written through the session store's own connections and write lock: a run's
ledger row then queues behind the same process's session writes instead of meeting them
in SQLite's busy handler, and it is committed like them (WAL, ``synchronous=NORMAL``: no
fsync per row; docs/performance.md has the cost of the fsync it used to pay).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from clinvk.core.errors import StoreError
from clinvk.core.store import usage_sql
from clinvk.core.usage.rows import UsageRow

if TYPE_CHECKING:
    from clinvk.core.store.sqlite.database import SqliteDatabase

_MARK = "?"


class SqliteUsageTable:
    """Thread-safe: reads use the thread's connection of the store's database, writes the
    store's write connection."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database  # the session database: migrated before this opens
        self.path = database.path

    @contextmanager
    def _use(self, action: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection, or for a write the store's, under its write lock."""
        try:
            if write:
                with self._db._write_lock:
                    yield self._db._writer_conn()
            else:
                yield self._db._conn()
        except sqlite3.Error as exc:
            raise StoreError(f"usage ledger {self.path}: cannot {action}: {exc}",
                             details={"path": str(self.path)}) from exc

    def close(self) -> None:
        """Nothing of its own to close: the connections are the store's."""

    def insert(self, row: UsageRow) -> None:
        statement, params = usage_sql.insert(row, _MARK)
        with self._use("record a run", write=True) as conn:
            conn.execute(statement, params)

    def delete_before(self, cutoff: float) -> int:
        statement, params = usage_sql.prune(cutoff, _MARK)
        with self._use("prune old rows", write=True) as conn:
            return conn.execute(statement, params).rowcount

    def sums(self, group_by: tuple[str, ...], *, since: float | None, until: float | None,
             owner: str | None, sees_all: bool) -> list[tuple[Any, ...]]:
        statement, params = usage_sql.sums(group_by, since, until, owner, sees_all, _MARK)
        with self._use("read usage") as conn:
            return conn.execute(statement, params).fetchall()

    def newest(self, limit: int, *, since: float | None, until: float | None,
               owner: str | None, sees_all: bool) -> list[UsageRow]:
        statement, params = usage_sql.newest(limit, since, until, owner, sees_all, _MARK)
        with self._use("read usage") as conn:
            return [usage_sql.row_of(values) for values in conn.execute(statement, params)]
