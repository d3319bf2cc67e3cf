"""Job listings over every store implementation: the page is built from the rows straight
into public job objects (they must equal what the full ``Job`` gives), walks by cursor
without repeats or gaps for each filter shape, and (SQLite) every shape reads an index in
page order instead of sorting or scanning."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from clinvk.core.jobs import JobKind, JobStatus
from clinvk.core.store import JobTable, Store
from clinvk.core.store.sqlite import SqliteStore

ALICE, BOB = "a" * 24, "b" * 24
RESULT = {"output": "done ✓", "token_usage": {"input_tokens": 10, "output_tokens": 2,
                                              "cost_usd": None}}
PLAN_RESULT = {"results": [{"token_usage": {"input_tokens": 1, "output_tokens": 1}},
                           {"token_usage": None}]}


def _fill(jobs: JobTable) -> list[str]:
    """Twelve jobs of two owners, every kind of value a listed job shows."""
    ids = []
    for i in range(12):
        kind = (JobKind.PROMPT, JobKind.PARALLEL)[i % 2]
        job = jobs.create(kind, {"prompt": f"p{i}", "big": "x" * 200},
                          owner=(ALICE, BOB, None)[i % 3], backend="claude" if i % 2 else None,
                          max_queued=0,
                          webhook={"url": "https://hooks.example/j", "state": "pending"}
                          if i == 4 else None)
        assert job is not None
        ids.append(job.id)
        if i % 4 == 1:
            jobs.finish(job.id, JobStatus.SUCCEEDED,
                        result=RESULT if kind == JobKind.PROMPT else PLAN_RESULT)
        elif i % 4 == 2:
            jobs.finish(job.id, JobStatus.FAILED, error="backend failed")
    return ids


def _walk(jobs: JobTable, **filters: Any) -> list[str]:
    seen: list[str] = []
    before = None
    while True:
        page = jobs.list(before=before, limit=3, **filters)
        assert len(page.records) <= 3
        seen += [r["id"] for r in page.records]
        if page.next_key is None:
            return seen
        assert page.next_key[1] == page.records[-1]["id"]
        before = page.next_key


@pytest.fixture
def jobs(store: Store) -> JobTable:
    return store.jobs


def test_listed_jobs_are_the_jobs_own_public_objects(jobs: JobTable) -> None:
    ids = _fill(jobs)
    page = jobs.list(owner=None, sees_all=True, limit=100)
    assert page.next_key is None
    assert [r["id"] for r in page.records] == list(reversed(ids))
    assert page.records == [jobs.get(r["id"]).to_dict() for r in page.records]
    assert any("usage" in r for r in page.records) and any("webhook" in r for r in page.records)
    assert all("request" not in r and "owner" not in r for r in page.records)


@pytest.mark.parametrize("filters", [
    {"owner": None, "sees_all": True},
    {"owner": ALICE, "sees_all": False},
    {"owner": None, "sees_all": False},  # the local owner: jobs without a key
    {"owner": None, "sees_all": True, "status": JobStatus.QUEUED},
    {"owner": BOB, "sees_all": False, "kind": JobKind.PARALLEL},
])
def test_cursor_pages_cover_each_filter_shape_once(jobs: JobTable, filters) -> None:
    _fill(jobs)
    full = [r["id"] for r in jobs.list(limit=100, **filters).records]
    assert full and _walk(jobs, **filters) == full


def test_every_listing_shape_reads_an_index_in_page_order(sqlite_store: SqliteStore) -> None:
    jobs = sqlite_store.jobs
    _fill(jobs)
    statements: list[str] = []
    jobs._conn.set_trace_callback(statements.append)
    key = (1e12, "job_z")
    for filters in ({"owner": None, "sees_all": True}, {"owner": ALICE, "sees_all": False},
                    {"owner": None, "sees_all": True, "status": JobStatus.QUEUED}):
        jobs.list(limit=5, **filters)
        jobs.list(limit=5, before=key, **filters)
    jobs._conn.set_trace_callback(None)
    check = sqlite3.connect(sqlite_store.path)
    listings = [s for s in statements if s.startswith("SELECT") and "ORDER BY" in s]
    assert len(listings) == 6
    for sql in listings:
        plan = " ".join(row[3] for row in check.execute("EXPLAIN QUERY PLAN " + sql))
        assert "TEMP B-TREE" not in plan, (sql, plan)
        if "owner IS" in sql or "status =" in sql or "< (" in sql:
            assert "SEARCH" in plan, (sql, plan)  # a range from the key, not a scan
    check.close()
