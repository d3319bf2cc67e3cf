"""What only the PostgreSQL store has: its migrations on a shared server (several first
starts at once), its pool and its errors, and the plans of its listings."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid

import psycopg
import pytest
from support.stores import FakeClock, pg_database

from clinvk.core.config.model import Config
from clinvk.core.errors import ConfigError, StoreError
from clinvk.core.store import configured_store
from clinvk.core.store.migrations import latest_version
from clinvk.core.store.postgresql import PostgresStore
from clinvk.core.types import StoreDialect

LATEST = latest_version(StoreDialect.POSTGRESQL)
WD = "/srv/project"


@pytest.fixture
def fresh_database(postgres_url: str) -> str:
    """A database nobody has migrated yet."""
    return pg_database(postgres_url, "fresh_" + uuid.uuid4().hex[:10])


def _first_start(url: str, start, results) -> None:
    start.wait(30)
    try:
        store = PostgresStore(url)
        store.create(backend="claude", working_dir=WD)
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
        results.put(repr(exc))


def test_gateways_starting_together_migrate_once(fresh_database: str) -> None:
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_first_start, args=(fresh_database, start, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes == ["ok"] * 4
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT version FROM clinvk_schema").fetchall() == [(LATEST,)]
        assert conn.execute("SELECT n FROM session_counts").fetchall() == [(4,)]


def test_a_newer_schema_is_refused(fresh_database: str) -> None:
    PostgresStore(fresh_database).close()
    with psycopg.connect(fresh_database) as conn:
        conn.execute("UPDATE clinvk_schema SET version = %s", (LATEST + 1,))
    from clinvk.core.store.postgresql import database

    database._MIGRATED.clear()  # as a new process would
    with pytest.raises(StoreError, match="newer than this clinvk understands"):
        PostgresStore(fresh_database)


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = "postgresql://clinvk:hunter2@127.0.0.1:1/clinvk"  # nothing listens on port 1
    with pytest.raises(StoreError) as exc:
        PostgresStore(url)
    assert "127.0.0.1" in str(exc.value) and "hunter2" not in str(exc.value)
    assert exc.value.details["url"] == "postgresql://clinvk:***@127.0.0.1:1/clinvk"
    assert exc.value.code == "store_unavailable"  # an outage: the edges answer 503


def test_a_busy_pool_fails_after_its_timeout(postgres_url: str) -> None:
    config = Config().with_overrides({"store.url": pg_database(postgres_url, "store_suite"),
                                      "store.pool_max_size": 1, "store.pool_min_size": 0,
                                      "store.pool_timeout_secs": 1})
    store = configured_store(config, home=None)  # type: ignore[arg-type]
    assert isinstance(store, PostgresStore) and store.settings.max_size == 1

    def hold(conn: psycopg.Connection) -> None:
        with pytest.raises(StoreError, match="cannot count sessions"):
            store.count()  # the only connection is taken: waits 1 s, then fails

    store.run("hold the only connection", hold)
    assert store.count() >= 0  # given back: works again
    store.close()


@pytest.mark.parametrize("url", ["mysql://h/db", "postgresql://h/db name", "relative/dir",
                                 "sqlite://relative"])
def test_a_bad_store_url_is_a_config_error_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.url: must be empty"):
        Config().with_overrides({"store.url": url})


def test_config_show_masks_the_password_of_the_store_url() -> None:
    config = Config().with_overrides({"store.url": "postgresql://u:hunter2@db:5432/clinvk"})
    assert config.store.url.endswith("u:hunter2@db:5432/clinvk")
    assert "hunter2" not in str(config.to_dict()) and "hunter2" not in str(config.describe())


LISTINGS = ({}, {"backend": "claude"}, {"status": "error"},
            {"backend": "claude", "status": "error"}, {"tag": "odd"},
            {"tag": "odd", "backend": "codex"}, {"tag": "odd", "status": "active"},
            {"working_dir": "/w/0"})


def test_every_listing_has_an_index_in_page_order(postgres_url: str) -> None:
    """With sorts off, no listing still needs one: an index yields its order, so on a big
    table the planner walks it and stops at the page size. (A Sort that remains under
    enable_sort = off is one no index can avoid.)"""
    url = pg_database(postgres_url, "store_suite")
    store = PostgresStore(url, clock=FakeClock())
    for i in range(30):
        store.create(backend=("claude", "codex")[i % 2], working_dir=f"/w/{i % 3}",
                     status=("active", "error")[i % 2], tags=["odd"] if i % 2 else [])
    store.close()
    from clinvk.core.store.postgresql.reads import SELECTED, _listing_source

    with psycopg.connect(url) as conn:
        conn.execute("SET enable_sort = off")
        for filters in LISTINGS:
            source, alias, key_id, where, params = _listing_source(
                filters.get("tag"), filters.get("working_dir"))
            for column in ("backend", "status"):
                if column in filters:
                    where.append(f"{alias}.{column} = %s")
                    params.append(filters[column])
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            plan = "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT {SELECTED} FROM {source}{clause} ORDER BY "
                f"{alias}.last_used DESC, {key_id} DESC LIMIT 100", params))
            assert "Sort" not in plan, (filters, plan)


def test_both_dialects_have_the_same_numbered_migrations() -> None:
    """A schema step added to one dialect's folder must be added to the other's too."""
    from clinvk.core.store.migrations import migrations

    names = {dialect: [m.name for m in migrations(dialect)] for dialect in StoreDialect}
    assert names[StoreDialect.SQLITE] == names[StoreDialect.POSTGRESQL]


def test_a_claim_from_another_node_counts_until_it_expires(fresh_database: str) -> None:
    """Another gateway host's pid cannot be looked at: its claim on a job holds while it
    is renewed, and once it expired the job is taken over (queued) or lost (running)."""
    from clinvk.core.jobs.model import JobKind, JobStatus

    store = PostgresStore(fresh_database)
    jobs = store.jobs
    waiting = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    running = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    with psycopg.connect(fresh_database) as conn:  # held by a process on another machine
        for job, status in ((waiting, JobStatus.QUEUED), (running, JobStatus.RUNNING)):
            conn.execute("UPDATE jobs SET status = %s, runner_pid = 1, runner_start = 'x', "
                         "runner_node = 'gateway-2@ns', claim_expires = extract(epoch FROM "
                         "now()) + 60 WHERE id = %s", (status, job.id))
    assert not jobs.claim(waiting.id, os.getpid(), 30)
    assert jobs.orphaned_running() == []
    with psycopg.connect(fresh_database) as conn:  # its renewals stopped a while ago
        conn.execute("UPDATE jobs SET claim_expires = extract(epoch FROM now()) - 1")
    assert jobs.orphaned_running() == [running.id]
    assert jobs.claim(waiting.id, os.getpid(), 30)
    assert jobs.get(waiting.id).status is JobStatus.QUEUED
    store.close()
