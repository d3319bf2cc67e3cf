"""Store helpers for tests that run against every store implementation, and stand-in
stores for failure tests.

A test names its store by a *location* (a SQLite file path or a PostgreSQL URL), opens it
with :func:`open_at` (in any process) and reaches below the interface only through
:func:`sql`, which takes ``?`` placeholders on both databases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinvk.core.errors import StoreError, StoreUnavailable
from clinvk.core.store import Store


class FakeClock:
    """Deterministic time so ordering, expiry and retention need no sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: The implementations the store suite runs against.
KINDS = ("sqlite", "postgresql")


def open_at(location: str, clock: Callable[[], float] | None = None) -> Store:
    """The store at ``location``, with an optional fake clock."""
    if location.startswith("postgresql://"):
        from clinvk.core.store.postgresql import PostgresStore

        return PostgresStore(location, clock=clock)
    from clinvk.core.store.sqlite import SqliteStore

    return SqliteStore(location, clock=clock)


def sql(store: Store, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database (``?`` placeholders); its rows, if any."""
    url = getattr(store, "url", None)
    if url is None:  # SQLite: the store's own connection of this thread
        cur = store._conn().execute(statement, params)  # type: ignore[attr-defined]
        return cur.fetchall() if cur.description else []
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(re.sub(r"\?", "%s", statement), params)
        return cur.fetchall() if cur.description else []


def stale_records(store: Store) -> list[str]:
    """Ids of the session rows whose ``record_json`` is not what
    :func:`~clinvk.core.store.encoded.encode_record` makes of the row's columns now: a
    write path that changed a column without refreshing the encoding."""
    from clinvk.core.store.encoded import encode_record
    from clinvk.core.store.rows import COLUMNS

    rows = sql(store, f"SELECT {', '.join(COLUMNS)}, record_json FROM sessions")
    return [row[0] for row in rows
            if (None if row[-1] is None else bytes(row[-1])) != encode_record(row[:-1])]


def pg_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url`` (created if missing)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() \
                is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def pg_empty(url: str) -> None:
    """Delete every row of every clinvk table (the schema and its version stay)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'clinvk_schema'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def sqlite_location(directory: Path) -> str:
    return str(directory / "sessions.db")


class BrokenStore:
    """A store whose every call fails, as a corrupt or unreadable database would."""

    path = Path("/nonexistent/sessions.db")

    @property
    def jobs(self):
        raise StoreError("cannot open the job tables in /secret/path/sessions.db")

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreError("disk I/O error at /secret/path/sessions.db")

        return fail


class UnreachableStore(BrokenStore):
    """A store that cannot be reached right now (a shared database down)."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreUnavailable("connection refused to db.internal:5432")

        return fail
