"""The usage ledger's statements, written once for every SQL store.

Plain SQL with parameters and no database functions: an implementation passes its
driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg) and runs the text as is.
"""

from __future__ import annotations

import functools
from typing import Any

from clinvk.core.types import UsageGroup
from clinvk.core.usage.rows import UsageRow

__all__ = ["COLUMNS", "insert", "newest", "prune", "row_of", "sums"]

COLUMNS = ("id", "at", "day", "hour", "key_id", "backend", "model", "origin", "status",
           "exit_code", "duration_ms", "input_tokens", "output_tokens", "cached_tokens",
           "cost_usd", "session_id")
_SUMS = ("COUNT(*), SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), SUM(input_tokens), "
         "SUM(output_tokens), SUM(cached_tokens), SUM(cost_usd), SUM(duration_ms)")
_GROUP_COLUMN = {UsageGroup.KEY: "key_id", UsageGroup.BACKEND: "backend",
                 UsageGroup.MODEL: "model", UsageGroup.DAY: "day", UsageGroup.HOUR: "hour",
                 UsageGroup.ORIGIN: "origin", UsageGroup.STATUS: "status"}


@functools.cache
def _insert_statement(mark: str) -> str:
    return "INSERT INTO usage_runs ({}) VALUES ({})".format(
        ", ".join(COLUMNS), ", ".join(mark for _ in COLUMNS))


def insert(row: UsageRow, mark: str) -> tuple[str, tuple[Any, ...]]:
    values = (row.id, row.at, row.day, row.hour, row.key_id, row.backend, row.model,
              row.origin, row.status, row.exit_code, row.duration_ms, row.input_tokens,
              row.output_tokens, row.cached_tokens, row.cost_usd, row.session_id)
    return _insert_statement(mark), values


def prune(cutoff: float, mark: str) -> tuple[str, tuple[Any, ...]]:
    return f"DELETE FROM usage_runs WHERE at < {mark}", (cutoff,)


def _where(since: float | None, until: float | None, owner: str | None, sees_all: bool,
           mark: str) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if since is not None:
        clauses.append(f"at >= {mark}")
        params.append(since)
    if until is not None:
        clauses.append(f"at < {mark}")
        params.append(until)
    if not sees_all:
        clauses.append(f"key_id = {mark}")  # a caller without a key id sees no row
        params.append(owner)
    return " AND ".join(clauses), params


def sums(group_by: tuple[str, ...], since: float | None, until: float | None,
         owner: str | None, sees_all: bool, mark: str) -> tuple[str, list[Any]]:
    """One row per group: the group's values in ``group_by`` order, then the sums in
    ``SUM_NAMES`` order."""
    where, params = _where(since, until, owner, sees_all, mark)
    columns = [_GROUP_COLUMN[UsageGroup(name)] for name in group_by]
    statement = f"SELECT {', '.join([*columns, _SUMS])} FROM usage_runs WHERE {where}"
    if columns:
        statement += " GROUP BY " + ", ".join(columns)
    return statement, params


def newest(limit: int, since: float | None, until: float | None, owner: str | None,
           sees_all: bool, mark: str) -> tuple[str, list[Any]]:
    where, params = _where(since, until, owner, sees_all, mark)
    statement = (f"SELECT {', '.join(COLUMNS)} FROM usage_runs WHERE {where} "
                 f"ORDER BY at DESC, id DESC LIMIT {mark}")
    return statement, [*params, limit]


def row_of(values: tuple[Any, ...] | Any) -> UsageRow:
    """A selected row (in COLUMNS order) as a UsageRow; day and hour derive from ``at``."""
    data = dict(zip(COLUMNS, tuple(values), strict=True))
    data.pop("day")
    data.pop("hour")
    return UsageRow(**data)
