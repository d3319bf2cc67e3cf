"""The usage ledger's rows in the SQLite store file (migration ``005_usage_runs.sql``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinvk.core.errors import StoreError
from clinvk.core.store import usage_sql
from clinvk.core.usage.rows import UsageRow

_MARK = "?"


class SqliteUsageTable:
    """Thread-safe: one connection per process (reopened after a fork), behind a lock."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)  # the session database: migrated before this opens
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                                         check_same_thread=False, isolation_level=None)
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _use(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise StoreError(f"usage ledger {self.path}: cannot {action}: {exc}",
                                 details={"path": str(self.path)}) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def insert(self, row: UsageRow) -> None:
        statement, params = usage_sql.insert(row, _MARK)
        with self._use("record a run") as conn:
            conn.execute(statement, params)

    def delete_before(self, cutoff: float) -> int:
        statement, params = usage_sql.prune(cutoff, _MARK)
        with self._use("prune old rows") as conn:
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
