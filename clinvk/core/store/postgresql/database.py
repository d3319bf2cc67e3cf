"""PostgreSQL plumbing of the shared store: one connection pool per process, migrations.

* The pool (psycopg_pool) is opened on first use in the process that uses it, never
  before: a gunicorn master that checks the store at start-up only migrates over a
  one-off connection, so its forked workers each open their own pool and no socket is
  ever shared across a fork. Pools a child inherits over fork are left untouched (closing
  one would end the parent's sessions on the server).
* Every operation is one transaction on one pooled connection (:meth:`run`); one that
  PostgreSQL aborts as a deadlock or serialization failure is retried.
* The schema is the numbered scripts in ``clinvk/core/store/sql/postgresql``; table
  ``clinvk_schema`` holds the version. Migrations run under a transaction-scoped advisory
  lock, so gateways starting together migrate once, one after the other.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

from clinvk.core.config.checks import mask_url_password
from clinvk.core.errors import StoreError, StoreUnavailable
from clinvk.core.store.encoded import BACKFILL_BATCH, RECORD_JSON_VERSION, refreshed
from clinvk.core.store.migrations import latest_version, migrations
from clinvk.core.store.pool import PoolSettings
from clinvk.core.store.rows import COLUMNS
from clinvk.core.types import StoreDialect

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # the optional extra is missing
    raise StoreError(
        "store.url names PostgreSQL but psycopg is not installed: "
        "pip install 'clinvk[postgres]'", details={"reason": "driver_missing"}) from exc

__all__ = ["PoolSettings", "PostgresDatabase", "redact"]

T = TypeVar("T")

#: Any constant works as long as every clinvk uses the same: it names "clinvk migrates".
_MIGRATION_LOCK = 0x636C696E766B  # "clinvk"
_ATTEMPTS = 3  # a deadlock victim is retried this often in all
_RECONNECT_GIVE_UP_SECS = 5.0


def redact(url: str) -> str:
    """``url`` without its password: what errors and logs may show."""
    return mask_url_password(url)


_POOLS: dict[tuple[int, str, PoolSettings], ConnectionPool] = {}
_MIGRATED: set[tuple[int, str]] = set()
_POOLS_LOCK = threading.Lock()
# Pools inherited over fork: never used or closed in the child, only kept referenced.
_INHERITED: list[ConnectionPool] = []


def _after_fork_in_child() -> None:
    _INHERITED.extend(_POOLS.values())
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def application_name() -> str:
    """How this process's connections show in ``pg_stat_activity``: host and pid."""
    return f"clinvk:{socket.gethostname()[:40]}:{os.getpid()}"


def _shared_pool(url: str, settings: PoolSettings) -> ConnectionPool:
    key = (os.getpid(), url, settings)
    pool = _POOLS.get(key)
    if pool is not None and not pool.closed:
        return pool
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                url, min_size=settings.min_size, max_size=settings.max_size,
                timeout=settings.timeout_secs, open=False, name="clinvk-store",
                # a connection that died with a server restart is replaced, not handed out
                check=ConnectionPool.check_connection,
                # After an outage the pool's own retries back off exponentially (1, 2, 4,
                # 8 ... s), so a database back after a minute would wait half a minute
                # more; giving those retries up early instead lets the next request that
                # finds the pool short open a connection at once.
                reconnect_timeout=_RECONNECT_GIVE_UP_SECS,
                kwargs={"connect_timeout": settings.connect_timeout_secs,
                        "application_name": application_name()})
            pool.open(wait=False)
            _POOLS[key] = pool
    return pool


class PostgresDatabase:
    """Connections, transactions and migrations of one PostgreSQL store database."""

    def __init__(self, url: str, *, pool: PoolSettings | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.url = url
        self.shown = redact(url)
        self.settings = pool or PoolSettings()
        self._clock: Callable[[], float] = clock or time.time
        if (os.getpid(), url) not in _MIGRATED:
            self._migrate()
            _MIGRATED.add((os.getpid(), url))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's pool for the database (a later use opens a new one)."""
        with _POOLS_LOCK:
            pool = _POOLS.pop((os.getpid(), self.url, self.settings), None)
        if pool is not None:
            pool.close()

    def error(self, action: str, exc: BaseException) -> StoreError:
        """A StoreError that names the database (never its password) and the action."""
        details: dict[str, Any] = {"url": self.shown}
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate:
            details["sqlstate"] = sqlstate
        if sqlstate == "53100":  # disk_full: the edges tell the client so plainly
            details["reason"] = "disk_full"
        elif isinstance(exc, psycopg.OperationalError):
            # No connection (server down, unreachable, restarting, every pooled connection
            # busy past pool_timeout_secs): an outage, answered 503 with Retry-After.
            return StoreUnavailable(f"session store {self.shown}: cannot {action}: {exc}",
                                    details=details)
        return StoreError(f"session store {self.shown}: cannot {action}: {exc}",
                          details=details)

    def run(self, action: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(conn)`` in one transaction: committed when it returns, rolled back when
        it raises. Errors of the database become :class:`StoreError`; ours pass through."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with _shared_pool(self.url, self.settings).connection() as conn:
                    return work(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == _ATTEMPTS:
                    raise self.error(action, exc) from exc
            except psycopg.Error as exc:  # PoolTimeout is one too
                raise self.error(action, exc) from exc
        raise AssertionError("unreachable")

    def _migrate(self) -> None:
        """Bring the schema to this clinvk's version, once per database and process."""
        try:
            with psycopg.connect(self.url, connect_timeout=self.settings.connect_timeout_secs,
                                 application_name=application_name() + ":migrate") as conn:
                self._apply_migrations(conn)
        except StoreError:
            raise
        except psycopg.Error as exc:
            raise self.error("open the database", exc) from exc

    def _apply_migrations(self, conn: psycopg.Connection[Any]) -> None:
        latest = latest_version(StoreDialect.POSTGRESQL)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS clinvk_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM clinvk_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO clinvk_schema (version) VALUES (0)")
            version = row[0] if row else 0
            if version > latest:
                raise StoreError(
                    f"session store {self.shown}: schema version {version} is newer than "
                    f"this clinvk understands ({latest}); upgrade clinvk",
                    details={"url": self.shown})
            for step in migrations(StoreDialect.POSTGRESQL)[version:]:
                conn.execute(step.script.encode())  # a script: several statements, no params
                if step.version == RECORD_JSON_VERSION:
                    self._fill_record_json(conn)
                conn.execute("UPDATE clinvk_schema SET version = %s", (step.version,))

    @staticmethod
    def _fill_record_json(conn: psycopg.Connection[Any]) -> None:
        """Encode every existing session row's record (part of migration 009), in id
        batches, each one UPDATE from two arrays."""
        select = (f"SELECT {', '.join(COLUMNS)}, id FROM sessions WHERE id > %s "
                  "ORDER BY id LIMIT %s")
        last = ""
        while rows := conn.execute(select, (last, BACKFILL_BATCH)).fetchall():
            pairs = refreshed(rows)
            conn.execute("UPDATE sessions AS s SET record_json = v.r "
                         "FROM unnest(%s::bytea[], %s::text[]) AS v(r, id) WHERE s.id = v.id",
                         ([p[0] for p in pairs], [p[1] for p in pairs]))
            last = rows[-1][-1]
