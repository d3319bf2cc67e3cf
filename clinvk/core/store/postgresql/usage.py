"""The usage ledger's rows in PostgreSQL (migration ``005_usage_runs.sql``); the
statements are the shared ones of :mod:`clinvk.core.store.usage_sql`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinvk.core.store import usage_sql
from clinvk.core.usage.rows import UsageRow

if TYPE_CHECKING:
    from clinvk.core.store.postgresql.database import PostgresDatabase

__all__ = ["PostgresUsageTable"]

_MARK = "%s"


class PostgresUsageTable:
    """Usage rows over the store's pool; every method is one transaction."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def close(self) -> None:
        """Nothing of its own to close: the pool belongs to the store."""

    def insert(self, row: UsageRow) -> None:
        statement, params = usage_sql.insert(row, _MARK)
        self._db.run("record a run", lambda conn: conn.execute(statement, params))

    def delete_before(self, cutoff: float) -> int:
        statement, params = usage_sql.prune(cutoff, _MARK)
        return int(self._db.run("prune old usage rows",
                                lambda conn: conn.execute(statement, params).rowcount))

    def sums(self, group_by: tuple[str, ...], *, since: float | None, until: float | None,
             owner: str | None, sees_all: bool) -> list[tuple[Any, ...]]:
        statement, params = usage_sql.sums(group_by, since, until, owner, sees_all, _MARK)
        rows = self._db.run("read usage",
                            lambda conn: conn.execute(statement, params).fetchall())
        # SUM over BIGINT is NUMERIC in PostgreSQL: hand back ints, as SQLite does.
        return [tuple(int(v) if _is_decimal(v) else v for v in row) for row in rows]

    def newest(self, limit: int, *, since: float | None, until: float | None,
               owner: str | None, sees_all: bool) -> list[UsageRow]:
        statement, params = usage_sql.newest(limit, since, until, owner, sees_all, _MARK)
        rows = self._db.run("read usage",
                            lambda conn: conn.execute(statement, params).fetchall())
        return [usage_sql.row_of(values) for values in rows]


def _is_decimal(value: Any) -> bool:
    from decimal import Decimal

    return isinstance(value, Decimal) and value == value.to_integral_value()
