"""The store suite runs every test that takes ``store`` (or ``location``) once per store
implementation: the embedded SQLite file and a real PostgreSQL server (installed and
started by the ``postgres_url`` fixture). Tests of one implementation's own mechanics
take ``sqlite_store`` instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stores import KINDS, FakeClock, open_at, pg_database, pg_empty, stale_records

from clinvk.core.store import Store
from clinvk.core.store.sqlite import SqliteStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def store_suite_database(postgres_url: str) -> str:
    return pg_database(postgres_url, "store_suite")


@pytest.fixture(params=KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's location: a new SQLite file, or the suite's PostgreSQL database
    emptied of every row."""
    if request.param == "sqlite":
        return str(tmp_path / "home" / "sessions.db")
    url: str = request.getfixturevalue("store_suite_database")
    pg_empty(url)
    return url


@pytest.fixture
def store(location: str, clock: FakeClock) -> Iterator[Store]:
    s = open_at(location, clock)
    yield s
    try:  # whatever the test did, every row's encoded record matches its columns
        assert stale_records(s) == []
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "home" / "sessions.db", clock=clock)
    yield s
    try:
        assert stale_records(s) == []
    finally:
        s.close()
