"""The usage ledger: a ``usage_runs`` table in the session store's database.

The table lives beside the sessions (same file, same owner-only mode) and is created on
first use with ``CREATE TABLE IF NOT EXISTS``, so it needs no change to the session
schema's version. Every statement is plain SQL with parameters (no SQLite functions), so
the same queries can serve another database behind the store. ``day`` and ``hour`` are
stored as UTC text at insert time, which keeps grouping by them portable and indexable.

One connection per thread and process, as the session store does; rows older than
``session.usage_retention_days`` are pruned when the ledger opens and then at most hourly.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinvk.core.errors import StoreError
from clinvk.core.types import UsageGroup
from clinvk.core.usage.rows import UsageQuery, UsageRow

_COLUMNS = ("id", "at", "day", "hour", "key_id", "backend", "model", "origin", "status",
            "exit_code", "duration_ms", "input_tokens", "output_tokens", "cached_tokens",
            "cost_usd", "session_id")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage_runs (
        id TEXT PRIMARY KEY,
        at REAL NOT NULL,
        day TEXT NOT NULL,
        hour TEXT NOT NULL,
        key_id TEXT,
        backend TEXT NOT NULL,
        model TEXT,
        origin TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        duration_ms INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_usd REAL,
        session_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS usage_runs_by_at ON usage_runs (at)",
    "CREATE INDEX IF NOT EXISTS usage_runs_by_key ON usage_runs (key_id, at)",
)
_GROUP_COLUMN = {UsageGroup.KEY: "key_id", UsageGroup.BACKEND: "backend",
                 UsageGroup.MODEL: "model", UsageGroup.DAY: "day", UsageGroup.HOUR: "hour",
                 UsageGroup.ORIGIN: "origin", UsageGroup.STATUS: "status"}
_SUMS = ("COUNT(*), SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), SUM(input_tokens), "
         "SUM(output_tokens), SUM(cached_tokens), SUM(cost_usd), SUM(duration_ms)")
_SUM_NAMES = ("runs", "failed_runs", "input_tokens", "output_tokens", "cached_tokens",
              "cost_usd", "duration_ms")
PRUNE_INTERVAL_SECS = 3600.0


class UsageLedger:
    """Append-only run ledger; readers filter by owner (clinvk.core.ownership)."""

    def __init__(self, path: str | Path, *, retention_days: int = 90,
                 busy_timeout: float = 10.0, clock: Callable[[], float] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.retention_days = retention_days
        self.busy_timeout = busy_timeout
        self._clock = clock or time.time
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._last_prune = 0.0
        with self._guard("create the usage table"):
            conn = self._conn()
            for statement in _SCHEMA:
                conn.execute(statement)
        self._maybe_prune()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _guard(self, action: str) -> Any:
        ledger = self

        class _Guard:
            def __enter__(self) -> None:
                return None

            def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"usage ledger {ledger.path}: cannot {action}: {exc}",
                                     details={"path": str(ledger.path)}) from exc
                return False

        return _Guard()

    # -- writing ----------------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        values = (row.id, row.at, row.day, row.hour, row.key_id, row.backend, row.model,
                  row.origin, row.status, row.exit_code, row.duration_ms, row.input_tokens,
                  row.output_tokens, row.cached_tokens, row.cost_usd, row.session_id)
        statement = "INSERT INTO usage_runs ({}) VALUES ({})".format(
            ", ".join(_COLUMNS), ", ".join("?" for _ in _COLUMNS))
        with self._guard("record a run"), self._write_lock:
            self._conn().execute(statement, values)
        self._maybe_prune()

    def prune(self, older_than_seconds: float) -> int:
        """Delete rows that ended longer ago than the age; returns how many."""
        cutoff = self._clock() - older_than_seconds
        with self._guard("prune old rows"), self._write_lock:
            return self._conn().execute("DELETE FROM usage_runs WHERE at < ?",
                                        (cutoff,)).rowcount

    def _maybe_prune(self) -> None:
        now = self._clock()
        if self.retention_days <= 0 or now - self._last_prune < PRUNE_INTERVAL_SECS:
            return
        self._last_prune = now
        self.prune(self.retention_days * 86400.0)

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def _where(query: UsageQuery) -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        if query.since is not None:
            clauses.append("at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("at < ?")
            params.append(query.until)
        if not query.visible_to.sees_all:
            clauses.append("key_id = ?")
            params.append(query.visible_to.key_id)
        return " AND ".join(clauses), params

    def summary(self, query: UsageQuery) -> list[dict[str, Any]]:
        """Sums per group (one row for no grouping), largest token use first."""
        where, params = self._where(query)
        columns = [_GROUP_COLUMN[UsageGroup(name)] for name in query.group_by]
        select = ", ".join([*columns, _SUMS])
        statement = f"SELECT {select} FROM usage_runs WHERE {where}"
        if columns:
            statement += " GROUP BY " + ", ".join(columns)
        with self._guard("read usage"):
            rows = self._conn().execute(statement, params).fetchall()
        out = []
        for row in rows:
            group = dict(zip(query.group_by, row[:len(columns)], strict=True))
            sums = dict(zip(_SUM_NAMES, row[len(columns):], strict=True))
            if not sums["runs"]:
                continue  # no grouping over no rows: nothing to report
            for name in _SUM_NAMES:
                if name != "cost_usd":
                    sums[name] = int(sums[name] or 0)
            out.append({**group, **sums})
        out.sort(key=lambda g: (-(g["input_tokens"] + g["output_tokens"]), -g["runs"],
                                [str(g[n]) for n in query.group_by]))
        if UsageGroup.DAY in query.group_by or UsageGroup.HOUR in query.group_by:
            when = UsageGroup.HOUR if UsageGroup.HOUR in query.group_by else UsageGroup.DAY
            out.sort(key=lambda g: str(g[when]))
        return out

    def recent(self, query: UsageQuery) -> list[UsageRow]:
        """The ``query.recent`` most recent rows in range, newest first."""
        if query.recent <= 0:
            return []
        where, params = self._where(query)
        statement = (f"SELECT {', '.join(_COLUMNS)} FROM usage_runs WHERE {where} "
                     "ORDER BY at DESC, id DESC LIMIT ?")
        with self._guard("read usage"):
            rows = self._conn().execute(statement, [*params, query.recent]).fetchall()
        return [_row(values) for values in rows]


def _row(values: tuple[Any, ...]) -> UsageRow:
    data = dict(zip(_COLUMNS, values, strict=True))
    data.pop("day")
    data.pop("hour")
    return UsageRow(**data)
