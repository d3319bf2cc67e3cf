"""Session store tests over every implementation (SQLite file, PostgreSQL server): real
threads, real processes. Tests of SQLite's own mechanics take ``sqlite_store``."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from support.stores import FakeClock, open_at, sql

from clinvk.core.errors import (
    AmbiguousPrefix,
    InvalidRequest,
    NotFound,
    SessionBusy,
    StoreError,
    StoreUnavailable,
)
from clinvk.core.events import TokenUsage, utc_timestamp
from clinvk.core.store import (
    STATUSES,
    Session,
    SessionPage,
    Store,
    default_store_path,
    derive_title,
)
from clinvk.core.store.keeper import LeaseKeeper
from clinvk.core.store.migrations import latest_version
from clinvk.core.store.sqlite import SqliteStore
from clinvk.core.types import StoreDialect

SCHEMA_VERSION = latest_version(StoreDialect.SQLITE)

TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
WD = "/srv/project"


def record(sid: str, *, last_used: float = 1_800_000_000.0, **kw) -> Session:
    """A hand-built record for ``_insert_many`` (lets tests pick ids)."""
    fields = {
        "backend": "claude",
        "backend_session_id": None,
        "working_dir": WD,
        "initial_prompt": "p",
        "title": "p",
    }
    fields.update(kw)
    return Session(
        id=sid,
        created_at=utc_timestamp(last_used),
        last_used=utc_timestamp(last_used),
        **fields,
    )


# --------------------------------------------------------------------------- create/get


def test_create_and_get_roundtrip(store: Store, clock: FakeClock) -> None:
    s = store.create(
        backend="claude",
        working_dir=WD,
        model="sonnet",
        initial_prompt="\n  Fix   the\tbug\nin main.py",
        tags=["api", "ci", "api"],
        metadata={"user": "ana", "n": 1},
    )
    assert re.fullmatch(r"[0-9a-f]{32}", s.id)
    assert TS_RE.fullmatch(s.created_at) and s.created_at == s.last_used
    assert s.created_at == utc_timestamp(clock.now)
    assert s.title == "Fix the bug"
    assert s.tags == ["api", "ci"]
    assert (s.status, s.turn_count, s.backend_session_id, s.error_message) == (
        "active",
        0,
        None,
        None,
    )
    assert s.token_usage == TokenUsage()
    assert not s.resumable
    got = store.get(s.id)
    assert got == s
    d = got.to_dict()
    assert d["token_usage"] == TokenUsage().to_dict()
    assert d["metadata"] == {"user": "ana", "n": 1}
    assert set(d) == {
        "id", "backend", "backend_session_id", "created_at", "last_used", "working_dir",
        "model", "initial_prompt", "title", "status", "turn_count", "token_usage", "tags",
        "metadata", "error_message", "parent_id", "owner",
    }  # fmt: skip


def test_create_optional_fields(store: Store) -> None:
    parent = store.create(backend="codex", working_dir=WD)
    child = store.create(
        backend="codex",
        working_dir=WD,
        parent_id=parent.id,
        status="completed",
        backend_session_id="thread-1",
    )
    got = store.get(child.id)
    assert (got.parent_id, got.status, got.backend_session_id) == (
        parent.id,
        "completed",
        "thread-1",
    )
    assert got.resumable


def test_metadata_beyond_64_bit_integers_and_unicode_read_back_exactly(store: Store) -> None:
    # JSON columns are read by orjson, which stops at 64-bit integers; the rest is the stdlib's.
    # "odd" and "below" as floats would compare unequal (2**70 alone would not notice).
    metadata = {"big": 2**70, "neg": -(2**65), "text": "naïve ☃ \u2028", "f": 0.1 + 0.2,
                "odd": 2**70 + 1, "u64": 2**64 - 1, "below": -(2**63) - 1}
    s = store.create(backend="claude", working_dir=WD, tags=["ü", "日本"], metadata=metadata)
    assert store.get(s.id).metadata == metadata
    [listed] = [r for r in store.list(limit=100).records if r["id"] == s.id]
    assert listed["metadata"] == metadata and listed["tags"] == ["ü", "日本"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"backend": ""}, "backend"),
        ({"working_dir": "relative/dir"}, "working_dir"),
        ({"working_dir": ""}, "working_dir"),
        ({"status": "running"}, "status"),
        ({"tags": "api"}, "tags"),
        ({"tags": ["ok", ""]}, "tags"),
        ({"metadata": {"x": object()}}, "metadata"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"parent_id": "abcd"}, "parent_id"),
        ({"initial_prompt": None}, "initial_prompt"),
    ],
)
def test_create_validation(store: Store, kwargs: dict, field: str) -> None:
    args = {"backend": "claude", "working_dir": WD, **kwargs}
    with pytest.raises(InvalidRequest) as exc:
        store.create(**args)
    assert exc.value.field == field
    assert store.count() == 0


def test_derive_title() -> None:
    assert derive_title("") == ""
    assert derive_title(" \n\t\n") == ""
    assert derive_title("  hello   world \nsecond line") == "hello world"
    long = "word " * 40
    title = derive_title(long)
    assert len(title) == 80 and title.endswith("\u2026")
    # cut by characters, never through a multi-byte sequence
    assert derive_title("é" * 200) == "é" * 79 + "\u2026"
    assert derive_title("x" * 80) == "x" * 80


def test_default_store_path(tmp_path: Path) -> None:
    assert default_store_path(tmp_path) == tmp_path / "sessions.db"


# --------------------------------------------------------------------------- prefix lookup


def test_get_by_prefix(store: Store) -> None:
    store._insert_many(
        [record("abcd" + "0" * 28), record("abcd" + "1" * 28), record("abce" + "2" * 28)]
    )
    assert store.get("abce").id == "abce" + "2" * 28
    assert store.get("ABCE22").id == "abce" + "2" * 28  # hex is case-insensitive
    assert store.get(" abcd1 ").id == "abcd" + "1" * 28
    assert store.get("abcd" + "0" * 28).id == "abcd" + "0" * 28
    with pytest.raises(AmbiguousPrefix) as exc:
        store.get("abcd")
    assert exc.value.field == "session_id"
    assert exc.value.details["candidates"] == ["abcd" + "0" * 28, "abcd" + "1" * 28]
    assert "abcd" + "0" * 28 in str(exc.value)
    assert isinstance(exc.value, InvalidRequest)  # edges map it to 400
    with pytest.raises(NotFound):
        store.get("ffff")
    with pytest.raises(NotFound):
        store.get("f" * 32)


def test_ambiguous_prefix_lists_a_few(store: Store) -> None:
    store._insert_many([record(f"beef{i:028x}") for i in range(20)])
    with pytest.raises(AmbiguousPrefix) as exc:
        store.get("beef")
    assert len(exc.value.details["candidates"]) == 5
    assert "more than 5" in str(exc.value)


@pytest.mark.parametrize("bad", ["abc", "", "abcg", "../etc", "ab/cd", "a" * 33, "12 34"])
def test_get_invalid_id(store: Store, bad: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        store.get(bad)
    assert exc.value.field == "session_id"
    assert not isinstance(exc.value, NotFound)


def test_get_non_string(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.get(1234)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- list


def _populate(store: Store, clock: FakeClock) -> list[Session]:
    made = []
    for i in range(12):
        clock.advance(1)
        made.append(
            store.create(
                backend=("claude", "codex", "gemini")[i % 3],
                working_dir=f"/w/{i % 2}",
                initial_prompt=f"task {i}",
                tags=["even"] if i % 2 == 0 else ["odd", "x"],
                status=STATUSES[i % 4],
            )
        )
    return made


def test_list_sorted_newest_first_with_total(store: Store, clock: FakeClock) -> None:
    made = _populate(store, clock)
    page = store.list()
    assert isinstance(page, SessionPage)
    assert [s.id for s in page.sessions] == [s.id for s in reversed(made)]
    assert (page.total, page.limit, page.offset) == (12, 100, 0)
    assert page.to_dict()["sessions"][0]["id"] == made[-1].id


def test_list_records_are_the_sessions_own_dicts(store: Store) -> None:
    """A page carries its rows as JSON-ready records built straight from the row; they
    must be exactly what the full ``Session`` gives, for every kind of value a row holds."""
    varied = [
        record("a1" + "0" * 30, last_used=1_800_000_000.0),
        record("a2" + "0" * 30, last_used=1_800_000_001.2345, backend="codex",
               backend_session_id="thread-1", model="o3", status="error",
               error_message="boom", turn_count=7, parent_id="a1" + "0" * 30,
               token_usage=TokenUsage(1200, 34, 1000, 5, 0.0123),
               tags=["api", "ci"], metadata={"ticket": "X-1", "n": 3, "nested": {"a": [1]}},
               owner="key_0123"),
        record("a3" + "0" * 30, last_used=1_800_000_002.9996, initial_prompt="grüße ✓",
               title="grüße ✓", tags=["ünïcode"], token_usage=TokenUsage(0, 0, 0, 0, None)),
    ]
    store._insert_many(varied)
    page = store.list()
    expected = [store.get(s.id) for s in reversed(varied)]
    assert page.records == [s.to_dict() for s in expected]
    assert page.sessions == expected
    assert page.to_dict()["sessions"] == page.records


def test_list_tiebreak_by_id(store: Store) -> None:
    ids = [uuid.uuid4().hex for _ in range(6)]
    store._insert_many([record(i, last_used=1_800_000_000.0) for i in ids])
    assert [s.id for s in store.list().sessions] == sorted(ids, reverse=True)
    # pages of a tie never repeat or skip a row
    seen = [s.id for off in range(0, 6, 2) for s in store.list(limit=2, offset=off).sessions]
    assert seen == sorted(ids, reverse=True)


def test_list_filters(store: Store, clock: FakeClock) -> None:
    made = _populate(store, clock)

    def expect(pred) -> list[str]:
        return [s.id for s in reversed(made) if pred(s)]

    cases = [
        ({"backend": "codex"}, lambda s: s.backend == "codex"),
        ({"status": "error"}, lambda s: s.status == "error"),
        ({"backend": "claude", "status": "active"}, lambda s: (s.backend, s.status) == (
            "claude", "active")),
        ({"tag": "odd"}, lambda s: "odd" in s.tags),
        ({"tag": "odd", "backend": "gemini"}, lambda s: "odd" in s.tags and s.backend == "gemini"),
        ({"working_dir": "/w/1"}, lambda s: s.working_dir == "/w/1"),
        ({"tag": "even", "working_dir": "/w/0", "status": "completed"},
         lambda s: "even" in s.tags and s.status == "completed"),
        ({"tag": "nope"}, lambda s: False),
        ({"backend": "nope"}, lambda s: False),
        ({"backend": "", "status": None}, lambda s: True),
    ]  # fmt: skip
    for kwargs, pred in cases:
        page = store.list(**kwargs)
        assert [s.id for s in page.sessions] == expect(pred), kwargs
        assert page.total == len(expect(pred)), kwargs
        small = store.list(limit=1, offset=1, **kwargs)
        assert small.total == page.total, kwargs
        assert [s.id for s in small.sessions] == expect(pred)[1:2], kwargs


def test_list_pagination(store: Store, clock: FakeClock) -> None:
    made = list(reversed(_populate(store, clock)))
    got = []
    for offset in range(0, 12, 5):
        page = store.list(limit=5, offset=offset)
        assert page.total == 12
        got.extend(s.id for s in page.sessions)
    assert got == [s.id for s in made]
    beyond = store.list(limit=5, offset=100)
    assert beyond.sessions == [] and beyond.total == 12


def _walk_by_cursor(store: Store, limit: int, **kwargs) -> list[str]:
    """Every id of a listing, page by page through ``next_cursor``."""
    seen: list[str] = []
    page = store.list(limit=limit, **kwargs)
    while True:
        seen.extend(s.id for s in page.sessions)
        if page.next_cursor is None:
            return seen
        page = store.list(limit=limit, cursor=page.next_cursor, **kwargs)


def test_list_by_cursor_matches_each_filter_shape(store: Store, clock: FakeClock) -> None:
    made = list(reversed(_populate(store, clock)))
    shapes = [{}, {"backend": "codex"}, {"tag": "odd"}, {"tag": "odd", "backend": "gemini"},
              {"working_dir": "/w/0"}, {"tag": "even", "working_dir": "/w/0"}]
    for kwargs in shapes:
        full = [s.id for s in store.list(**kwargs).sessions]
        assert full, kwargs
        assert [i for i in (s.id for s in made) if i in full] == full
        for limit in (1, 2, 5):
            assert _walk_by_cursor(store, limit, **kwargs) == full, (kwargs, limit)
        deep = store.list(limit=1, cursor=store.list(limit=1, **kwargs).next_cursor, **kwargs)
        assert deep.total == len(full), kwargs  # the total ignores the position


def test_list_by_cursor_through_ties(store: Store) -> None:
    ids = [uuid.uuid4().hex for _ in range(7)]
    store._insert_many([record(i, last_used=1_800_000_000.0) for i in ids])
    assert _walk_by_cursor(store, 2) == sorted(ids, reverse=True)
    last = store.list(limit=7)
    assert last.next_cursor is not None  # a full page may have a successor
    assert store.list(limit=7, cursor=last.next_cursor).sessions == []
    assert store.list(limit=8).next_cursor is None


@pytest.mark.parametrize("bad", ["x", "!!!", "bnVsbA", "WzEsMl0", "WyJhIiwiYiJd",
                                 "W3RydWUsImEiXQ", "A" * 600])
def test_list_refuses_a_foreign_cursor(store: Store, bad: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        store.list(cursor=bad)
    assert err.value.field == "cursor"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "bogus"}, "status"),
    ],
)
def test_list_validation(store: Store, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        store.list(**kwargs)
    assert exc.value.field == field


def test_list_limit_bounds_accepted(store: Store) -> None:
    assert store.list(limit=1).limit == 1
    assert store.list(limit=1000).limit == 1000


def test_list_query_plans_use_indexes(sqlite_store: SqliteStore, clock: FakeClock) -> None:
    """Every listing shape must be an index range scan: no sort of the whole table."""
    _populate(sqlite_store, clock)
    conn = sqlite_store._conn()
    captured: list[str] = []
    conn.set_trace_callback(captured.append)
    for kwargs in (
        {},
        {"backend": "claude"},
        {"status": "error"},
        {"backend": "claude", "status": "error"},
        {"tag": "odd"},
        {"tag": "odd", "backend": "codex"},
        {"tag": "odd", "status": "active"},
        {"tag": "odd", "backend": "codex", "status": "active"},
        {"tag": "odd", "working_dir": "/w/1"},
        {"working_dir": "/w/0"},
        {"working_dir": "/w/0", "backend": "codex"},
    ):
        sqlite_store.list(limit=2, **kwargs)
    conn.set_trace_callback(None)
    selects = [q for q in captured if q.lstrip().startswith("SELECT s.id")]
    assert len(selects) == 11
    for query in selects:
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + query))
        assert "TEMP B-TREE" not in plan, (query, plan)
        assert "SCAN s" not in plan or "sessions_by_last_used" in plan, (query, plan)


# --------------------------------------------------------------------------- latest


def test_latest(store: Store, clock: FakeClock) -> None:
    assert store.latest() is None
    a = store.create(backend="claude", working_dir="/a", backend_session_id="x")
    clock.advance(1)
    b = store.create(backend="codex", working_dir="/a")
    clock.advance(1)
    c = store.create(backend="claude", working_dir="/b")
    assert store.latest().id == c.id
    assert store.latest(backend="codex").id == b.id
    assert store.latest(working_dir="/a").id == b.id
    assert store.latest(backend="claude", working_dir="/a").id == a.id
    assert store.latest(resumable=True).id == a.id
    assert store.latest(backend="gemini") is None
    clock.advance(1)
    store.record_turn(a.id)
    assert store.latest().id == a.id


# --------------------------------------------------------------------------- record_turn


def test_record_turn_accumulates(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="claude", working_dir=WD, model="sonnet")
    clock.advance(5)
    r1 = store.record_turn(
        s.id,
        usage=TokenUsage(100, 20, 80, 3),
        backend_session_id="bs-1",
        status="completed",
    )
    assert r1.turn_count == 1
    assert r1.token_usage == TokenUsage(100, 20, 80, 3, None)
    assert r1.last_used == utc_timestamp(clock.now) and r1.created_at == s.created_at
    assert (r1.backend_session_id, r1.status, r1.model) == ("bs-1", "completed", "sonnet")
    clock.advance(5)
    r2 = store.record_turn(s.id[:6], usage=TokenUsage(1, 2, cost_usd=0.25))
    assert r2.turn_count == 2
    assert r2.token_usage == TokenUsage(101, 22, 80, 3, 0.25)
    assert r2.backend_session_id == "bs-1"  # kept: not given
    assert r2.status == "completed"
    r3 = store.record_turn(s.id, usage=TokenUsage(cost_usd=0.5), backend_session_id="")
    assert r3.token_usage.cost_usd == 0.75
    assert r3.backend_session_id == "bs-1"  # "" is no id
    r4 = store.record_turn(s.id, backend_session_id="bs-2", model="opus")
    assert (r4.turn_count, r4.backend_session_id, r4.model) == (4, "bs-2", "opus")
    assert store.get(s.id) == r4


def test_record_turn_error_then_success(store: Store) -> None:
    s = store.create(backend="codex", working_dir=WD)
    r = store.record_turn(s.id, status="error", error_message="exit status 2")
    assert (r.status, r.error_message) == ("error", "exit status 2")
    r = store.record_turn(s.id)  # status not given: error kept
    assert (r.status, r.error_message) == ("error", "exit status 2")
    r = store.record_turn(s.id, status="completed")  # success clears the stale error
    assert (r.status, r.error_message) == ("completed", None)
    r = store.record_turn(s.id, status="completed", error_message="warning")
    assert r.error_message == "warning"


def test_record_turn_errors(store: Store) -> None:
    s = store.create(backend="codex", working_dir=WD)
    with pytest.raises(NotFound):
        store.record_turn("0" * 32)
    with pytest.raises(InvalidRequest) as exc:
        store.record_turn(s.id, status="done")
    assert exc.value.field == "status"
    with pytest.raises(InvalidRequest) as exc:
        store.record_turn(s.id, usage=TokenUsage(-1, 0))
    assert exc.value.field == "usage"
    with pytest.raises(InvalidRequest):
        store.record_turn(s.id, usage={"input_tokens": 1})  # type: ignore[arg-type]
    assert store.get(s.id).turn_count == 0


# --------------------------------------------------------------------------- update


def test_update_fields(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="gemini", working_dir=WD, tags=["a"], metadata={"k": "v"})
    clock.advance(10)
    u = store.update(
        s.id[:8],
        status="paused",
        tags=["b", "c"],
        metadata={"k2": 2},
        title="  My   title ",
        error_message="oops",
    )
    assert (u.status, u.tags, u.metadata, u.title, u.error_message) == (
        "paused",
        ["b", "c"],
        {"k2": 2},
        "My title",
        "oops",
    )
    assert u.last_used == s.last_used  # editing is not using
    assert store.get(s.id) == u
    assert store.list(tag="a").total == 0
    assert [x.id for x in store.list(tag="c").sessions] == [s.id]
    assert store.count(status="paused") == 1 and store.count(status="active") == 0
    assert store.update(s.id, error_message=None).error_message is None
    assert store.update(s.id) == store.get(s.id)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"backend": "codex"}, "backend"),
        ({"turn_count": 9}, "turn_count"),
        ({"status": "gone"}, "status"),
        ({"tags": [1]}, "tags"),
        ({"title": 5}, "title"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_update_validation(store: Store, fields: dict, field: str) -> None:
    s = store.create(backend="gemini", working_dir=WD)
    with pytest.raises(InvalidRequest) as exc:
        store.update(s.id, **fields)
    assert exc.value.field == field


def test_update_missing(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update("1" * 32, status="paused")


def test_tag_listing_follows_last_used(store: Store, clock: FakeClock) -> None:
    a = store.create(backend="claude", working_dir=WD, tags=["t"])
    clock.advance(1)
    b = store.create(backend="claude", working_dir=WD, tags=["t"])
    assert [s.id for s in store.list(tag="t").sessions] == [b.id, a.id]
    clock.advance(1)
    store.record_turn(a.id)
    assert [s.id for s in store.list(tag="t").sessions] == [a.id, b.id]
    clock.advance(1)
    store.update(b.id, tags=["t", "u"])  # re-tagging keeps b's own last_used
    assert [s.id for s in store.list(tag="t").sessions] == [a.id, b.id]


# --------------------------------------------------------------------------- delete/count


def test_delete(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD, tags=["x"])
    other = store.create(backend="claude", working_dir=WD)
    assert store.count() == 2
    deleted = store.delete(s.id[:10])
    assert deleted.id == s.id and deleted.tags == ["x"]
    with pytest.raises(NotFound):
        store.get(s.id)
    with pytest.raises(NotFound):
        store.delete(s.id)
    assert store.count() == 1
    assert store.list(tag="x").total == 0
    assert sql(store, "SELECT COUNT(*) FROM session_tags") == [(0,)]
    assert store.get(other.id).id == other.id


def test_count_matches_table(store: Store, clock: FakeClock) -> None:
    made = _populate(store, clock)
    store.update(made[0].id, status="error")
    store.record_turn(made[1].id, status="completed")
    store.delete(made[2].id)
    assert store.count() == 11 == sql(store, "SELECT COUNT(*) FROM sessions")[0][0]
    for backend in ("claude", "codex", "gemini"):
        for status in STATUSES:
            real = sql(store, "SELECT COUNT(*) FROM sessions WHERE backend = ? AND status = ?",
                       (backend, status))[0][0]
            assert store.count(backend=backend, status=status) == real
            assert store.list(backend=backend, status=status).total == real
    store.update(made[3].id, tags=["odd", "new"])
    store.cleanup(older_than_seconds=clock.now - 1_800_000_000.0 - 4.5)  # drops made[0], made[3]
    for tag in ("even", "odd", "x", "new", "none"):
        real = sum(tag in s.tags for s in store.list(limit=1000).sessions)
        assert store.list(tag=tag, limit=1, offset=1).total == real, tag  # counter path
        everything = store.list(limit=1000).sessions
        for backend in (None, "claude", "codex", "gemini"):
            for status in (None, *STATUSES):
                want = [
                    s.id
                    for s in everything
                    if tag in s.tags and backend in (None, s.backend) and status in (None, s.status)
                ]
                page = store.list(tag=tag, backend=backend, status=status)
                assert [s.id for s in page.sessions] == want, (tag, backend, status)
                assert (
                    page.total == len(want) == store.count(tag=tag, backend=backend, status=status)
                )
                offset_page = store.list(tag=tag, backend=backend, status=status, offset=1)
                assert offset_page.total == len(want)


def test_count_reads_no_session_rows(sqlite_store: SqliteStore, clock: FakeClock) -> None:
    _populate(sqlite_store, clock)
    conn = sqlite_store._conn()
    captured: list[str] = []
    conn.set_trace_callback(captured.append)
    sqlite_store.count()
    conn.set_trace_callback(None)
    assert captured and all("FROM sessions" not in q for q in captured)


# --------------------------------------------------------------------------- cleanup


def test_cleanup(store: Store, clock: FakeClock) -> None:
    old = store.create(backend="claude", working_dir=WD, tags=["x"])
    clock.advance(10)
    older_busy = store.create(backend="claude", working_dir=WD)
    clock.advance(10)
    mid = store.create(backend="claude", working_dir=WD)
    clock.advance(100)
    fresh = store.create(backend="claude", working_dir=WD)
    lease = store.busy(older_busy.id).__enter__()

    preview = store.cleanup(older_than_seconds=50, dry_run=True)
    assert [s.id for s in preview] == [mid.id, old.id]  # busy one is kept, newest first
    assert store.count() == 4

    removed = store.cleanup(older_than_seconds=50)
    assert [s.id for s in removed] == [mid.id, old.id]
    assert {s.id for s in store.list().sessions} == {older_busy.id, fresh.id}
    assert store.list(tag="x").total == 0

    lease.release()
    assert [s.id for s in store.cleanup(older_than_seconds=50)] == [older_busy.id]
    assert store.cleanup(older_than_seconds=50) == []
    assert [s.id for s in store.list().sessions] == [fresh.id]


@pytest.mark.parametrize("age", [0, -1, math.nan, math.inf, "30", True])
def test_cleanup_rejects_bad_age(store: Store, age) -> None:
    store.create(backend="claude", working_dir=WD)
    with pytest.raises(InvalidRequest) as exc:
        store.cleanup(older_than_seconds=age)
    assert exc.value.field == "older_than_seconds"
    assert store.count() == 1


# --------------------------------------------------------------------------- busy guard


def test_busy_same_thread(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD)
    with store.busy(s.id) as lease:
        assert lease.held and lease.session_id == s.id
        with pytest.raises(SessionBusy) as exc:
            with store.busy(s.id[:6]):
                pass
        assert str(exc.value) == f"session {s.id} is busy: another turn is running"
        with pytest.raises(SessionBusy):
            store.delete(s.id)
        assert store.record_turn(s.id).turn_count == 1  # the holder records its turn
    assert not lease.held
    with store.busy(s.id):
        pass


def test_a_session_created_with_a_lease_is_busy_until_its_turn_is_recorded(
    store: Store,
) -> None:
    lease = store.new_lease(ttl_seconds=60)
    s = store.create(backend="claude", working_dir=WD, lease=lease)
    assert lease.held and lease.session_id == s.id
    with pytest.raises(SessionBusy):
        with store.busy(s.id):
            pass
    other = store.new_lease()
    assert store.record_turn(s.id, release=other).turn_count == 1  # not other's to give
    with pytest.raises(SessionBusy):
        with store.busy(s.id):
            pass
    store.record_turn(s.id, status="completed", release=lease, turns=0)
    assert not lease.held
    with store.busy(s.id):
        pass
    lease.release()  # idempotent, and never touches the lease taken meanwhile
    with pytest.raises(InvalidRequest):
        store.create(backend="claude", working_dir=WD, lease=lease)  # not fresh
    with pytest.raises(InvalidRequest):
        store.new_lease().acquire()  # only create() takes it


def test_busy_released_on_exception(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD)
    with pytest.raises(RuntimeError):
        with store.busy(s.id):
            raise RuntimeError("backend crashed")
    with store.busy(s.id):
        pass


def test_busy_unknown_and_invalid(store: Store) -> None:
    with pytest.raises(NotFound):
        with store.busy("a" * 32):
            pass
    with pytest.raises(InvalidRequest):
        with store.busy("zz"):
            pass
    with pytest.raises(InvalidRequest):
        store.busy("a" * 32, ttl_seconds=0)


def test_busy_other_thread(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD)
    held, done = threading.Event(), threading.Event()
    outcome: list[str] = []

    def holder() -> None:
        with store.busy(s.id):
            held.set()
            done.wait(10)

    def contender() -> None:
        try:
            with store.busy(s.id):
                outcome.append("acquired")
        except SessionBusy:
            outcome.append("busy")

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    c = threading.Thread(target=contender)
    c.start()
    c.join(10)
    done.set()
    t.join(10)
    assert outcome == ["busy"]
    contender()
    assert outcome == ["busy", "acquired"]


def test_busy_only_one_of_many_threads_wins(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        lease = store.busy(s.id)
        barrier.wait()
        try:
            lease.acquire()
            ok = True
        except SessionBusy:
            ok = False
        with lock:
            results.append(ok)
        barrier.wait()  # hold until everybody tried
        lease.release()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [False] * 7 + [True]


def test_busy_expiry_and_renew(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="claude", working_dir=WD)
    first = store.busy(s.id, ttl_seconds=60).acquire()
    clock.advance(59)
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    first.renew()  # now expires at +119
    clock.advance(59)
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    clock.advance(61)  # holder "crashed": lease expired
    second = store.busy(s.id).acquire()
    with pytest.raises(SessionBusy):
        first.renew()  # lost to the second holder
    first.release()  # must not free the second holder's lease
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    second.release()
    store.busy(s.id).acquire().release()


def test_busy_default_ttl_is_one_hour(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="claude", working_dir=WD)
    lease = store.busy(s.id).acquire()
    assert lease.expires_at == clock.now + 3600
    clock.advance(3601)
    store.busy(s.id).acquire()


def test_the_keeper_renews_a_held_lease_until_its_holder_stops(store: Store,
                                                                clock: FakeClock) -> None:
    """The heartbeat: a short lease stays held while its keeper renews it; once the holder
    stops renewing (it died on another machine, froze), any claimant gets the session
    within the ttl."""
    s = store.create(backend="claude", working_dir=WD)
    ticks = FakeClock(0.0)
    keeper = LeaseKeeper(clock=ticks)
    lease = store.busy(s.id, ttl_seconds=30).acquire()
    keeper.keep(lease)
    for _ in range(10):  # five minutes of a long turn, ten times the ttl
        clock.advance(10)
        ticks.advance(10)
        keeper.tick()
        with pytest.raises(SessionBusy):
            store.busy(s.id).acquire()
    keeper.drop(lease)  # the holder is gone: nobody renews
    clock.advance(29)
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    clock.advance(2)
    taker = store.busy(s.id, ttl_seconds=30).acquire()
    keeper.keep(lease)  # even a holder that comes back cannot renew a lease it lost
    ticks.advance(10)
    keeper.tick()
    assert keeper.held() == 0 and not lease.held
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    taker.release()


def test_the_keeper_forgets_released_leases(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="claude", working_dir=WD)
    ticks = FakeClock(0.0)
    keeper = LeaseKeeper(clock=ticks)
    lease = store.busy(s.id, ttl_seconds=30).acquire()
    keeper.keep(lease)
    store.record_turn(s.id, release=lease)  # the turn's write gives the lease back
    ticks.advance(10)
    keeper.tick()
    assert keeper.held() == 0
    store.busy(s.id).acquire().release()  # and nothing renewed it behind the new holder


def _hold_lease(path: str, sid: str, ttl: float, held, release, crash: bool) -> None:
    store = open_at(path)
    lease = store.busy(sid, ttl_seconds=ttl).acquire()
    held.set()
    if crash:
        os._exit(0)  # die without releasing
    release.wait(20)
    lease.release()


def test_busy_other_process_and_crash_expiry(location: str) -> None:
    path = location
    store = open_at(path)
    s = store.create(backend="claude", working_dir=WD)
    ctx = mp.get_context("spawn")

    held, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lease, args=(path, s.id, 60.0, held, release, False))
    p.start()
    try:
        assert held.wait(30)
        with pytest.raises(SessionBusy):
            with store.busy(s.id):
                pass
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0
    with store.busy(s.id):
        pass

    held = ctx.Event()
    p = ctx.Process(target=_hold_lease, args=(path, s.id, 0.5, held, release, True))
    p.start()
    assert held.wait(30)
    p.join(30)
    with store.busy(s.id):  # a dead holder of this host: its lease is taken over at once
        pass

    # A holder this host cannot check (another machine) keeps the lease until it expires.
    sql(store, "UPDATE sessions SET lease_owner = 'elsewhere@1:4242:1:abc', "
        "lease_expires = ? WHERE id = ?", (time.time() + 0.5, s.id))
    with pytest.raises(SessionBusy):
        store.busy(s.id).acquire()
    time.sleep(0.6)
    with store.busy(s.id):
        pass


# --------------------------------------------------------------------------- concurrency


TURNS_PER_THREAD = 100
THREADS = 8
PROCESSES = 3


def _usage_for(proc: int, thread: int, i: int) -> TokenUsage:
    return TokenUsage(1 + proc, 2 + thread, i % 3, 1, 0.25)


def _hammer(path: str, ids: list[str], proc: int, start) -> None:
    """One worker process: 8 threads each recording many turns on a few sessions."""
    store = open_at(path)
    start.wait(30)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(TURNS_PER_THREAD):
                sid = ids[(proc + thread + i) % len(ids)]
                store.record_turn(sid, usage=_usage_for(proc, thread, i), status="completed")
        except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"worker {proc} failed: {errors[0]!r}")


def test_no_lost_updates_8_threads_x_3_processes(location: str) -> None:
    path = location
    store = open_at(path)
    ids = [store.create(backend="claude", working_dir=WD).id for _ in range(3)]

    expected = {sid: [0, TokenUsage()] for sid in ids}
    for proc in range(PROCESSES):
        for thread in range(THREADS):
            for i in range(TURNS_PER_THREAD):
                entry = expected[ids[(proc + thread + i) % len(ids)]]
                entry[0] += 1
                entry[1] = entry[1].add(_usage_for(proc, thread, i))

    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_hammer, args=(path, ids, p, start)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    total = 0
    for sid in ids:
        s = store.get(sid)
        turns, usage = expected[sid]
        assert s.turn_count == turns
        assert s.token_usage == usage
        total += s.turn_count
    assert total == PROCESSES * THREADS * TURNS_PER_THREAD


def test_concurrent_creates_all_visible(location: str) -> None:
    """The Go store lost index entries when two processes created sessions (BUG-1)."""
    store = open_at(location)
    created: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(25):
            sid = store.create(backend="codex", working_dir=WD, tags=["t"]).id
            with lock:
                created.append(sid)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 200
    assert {s.id for s in store.list(limit=1000).sessions} == set(created)
    assert store.list(tag="t").total == 200


def _use_inherited_store(store: Store, sid: str, queue) -> None:
    queue.put(store.record_turn(sid).turn_count)


def test_store_survives_fork(location: str) -> None:
    """A store opened before fork (gunicorn --preload) works in the child and the parent."""
    store = open_at(location)
    sid = store.create(backend="claude", working_dir=WD).id
    store.record_turn(sid)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_use_inherited_store, args=(store, sid, queue))
    p.start()
    assert queue.get(timeout=30) == 2
    p.join(30)
    assert p.exitcode == 0
    assert store.record_turn(sid).turn_count == 3


def test_connection_per_thread(sqlite_store: SqliteStore) -> None:
    conns = []
    t = threading.Thread(target=lambda: conns.append(sqlite_store._conn()))
    t.start()
    t.join()
    assert conns[0] is not sqlite_store._conn()
    sqlite_store.close()
    assert sqlite_store.count() == 0  # reopens lazily after close()


def test_a_thread_that_only_writes_opens_no_connection(sqlite_store: SqliteStore) -> None:
    """Writes share the store's write connection: a thread that only writes (a vendor-API
    run recording its usage row) holds no connection, and no page cache, of its own."""
    session = sqlite_store.create(backend="claude", working_dir=WD)
    held = len(sqlite_store._holders)

    errors: list[BaseException] = []
    written, done = threading.Barrier(5), threading.Event()

    def writes() -> None:
        try:
            own = sqlite_store.create(backend="claude", working_dir=WD)
            sqlite_store.record_turn(session.id)
            sqlite_store.update(session.id, title="written by another thread")
            with sqlite_store.busy(own.id) as lease:
                lease.renew()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        written.wait(10)
        done.wait(10)  # alive while counted: a dead thread's connection is collected

    threads = [threading.Thread(target=writes) for _ in range(4)]
    for t in threads:
        t.start()
    written.wait(10)
    holders = len(sqlite_store._holders)
    done.set()
    for t in threads:
        t.join()
    assert errors == []
    assert holders == held
    got = sqlite_store.get(session.id)
    assert (got.title, got.turn_count) == ("written by another thread", 4)


# --------------------------------------------------------------------------- schema & errors


def test_schema_wal_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "sessions.db"
    first = SqliteStore(path)
    s = first.create(backend="claude", working_dir=WD)
    conn = first._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    assert (path.stat().st_mode & 0o777) == 0o600
    second = SqliteStore(str(path))
    assert second.get(s.id) == s
    first.close()
    second.close()


def test_store_error_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError) as exc:
        SqliteStore(blocker / "sessions.db")
    assert str(blocker / "sessions.db") in str(exc.value)
    assert exc.value.code == "store_error"


def test_store_error_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "sessions.db").mkdir()
    with pytest.raises(StoreError) as exc:
        SqliteStore(tmp_path / "sessions.db")
    assert str(tmp_path / "sessions.db") in str(exc.value)


def test_a_store_file_that_cannot_be_opened_any_more_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gone" / "sessions.db")
    store.create(backend="claude", working_dir="/w")
    shutil.rmtree(tmp_path / "gone")  # an unmounted volume, a removed state dir
    failure: list[BaseException] = []

    def fresh_thread() -> None:  # a new thread opens its own connection
        try:
            store.count()
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=fresh_thread)
    worker.start()
    worker.join()
    assert isinstance(failure[0], StoreUnavailable), failure
    assert failure[0].code == "store_unavailable" and "sessions.db" in str(failure[0])
    store.close()


def test_store_error_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as exc:
        SqliteStore(path)
    assert str(path) in str(exc.value) and "corrupt" in str(exc.value)


def test_store_error_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_store_error_disk_full(sqlite_store: SqliteStore) -> None:
    """A failing write (here: the file may not grow) surfaces as StoreError, not sqlite3."""
    conn = sqlite_store._writer_conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError) as exc:
        for _ in range(200):
            sqlite_store.create(backend="claude", working_dir=WD, initial_prompt="x" * 4000)
    assert str(sqlite_store.path) in str(exc.value) and "full" in str(exc.value)
    assert not conn.in_transaction  # the failed write was rolled back
    with pytest.raises(StoreError, match="full"):  # same connection: same clean error
        sqlite_store.create(backend="claude", working_dir=WD, initial_prompt="x" * 4000)
    assert sqlite_store.count() >= 0
    sqlite_store.close()  # a fresh connection has no page cap
    sqlite_store.create(backend="claude", working_dir=WD)


def test_store_error_read_only_connection(sqlite_store: SqliteStore) -> None:
    s = sqlite_store.create(backend="claude", working_dir=WD)
    sqlite_store._writer_conn().execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError) as exc:
        sqlite_store.record_turn(s.id)
    assert str(sqlite_store.path) in str(exc.value)
    assert sqlite_store.get(s.id).turn_count == 0


def test_lease_of_a_zombie_holder_is_taken_over(tmp_path):
    """A worker killed with -9 is a zombie until gunicorn reaps it: its lease is dead."""
    import subprocess

    from clinvk.core.store.lease_owners import LEASE_NODE as _LEASE_NODE
    from clinvk.core.store.lease_owners import holder_is_dead as _holder_is_dead

    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # exited, not yet reaped
        with open(f"/proc/{child.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        assert _holder_is_dead(f"{_LEASE_NODE}:{child.pid}:1:abc")
        assert not _holder_is_dead(f"{_LEASE_NODE}:{os.getppid()}:1:abc")  # alive
    finally:
        child.wait()


def test_a_lease_whose_release_write_failed_is_taken_over_by_its_own_process(tmp_path):
    """On a full disk (here: another writer holding the database) releasing a lease fails;
    once writes work again the session must not stay busy until the lease expires."""
    store = SqliteStore(tmp_path / "s.db", busy_timeout=0.2)
    s = store.create(backend="claude", working_dir=WD)
    lease = store.busy(s.id, ttl_seconds=3600).acquire()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError):
            lease.release()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.get(s.id) and not lease.held
    with store.busy(s.id):  # taken over at once, not after an hour
        with pytest.raises(SessionBusy):  # while a live holder of this process has it
            with store.busy(s.id):
                pass


@pytest.mark.parametrize("jobs_tables_present", [False, True])
def test_a_schema_v2_database_migrates_to_the_job_tables(tmp_path, jobs_tables_present):
    """A store written before the jobs became a migration keeps its sessions and gains
    the job tables, whether the old job store had created them already or not."""
    from clinvk.core.store.migrations import migrations
    from clinvk.core.store.sqlite.database import split_script

    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in migrations(StoreDialect.SQLITE)[:2]:
        for statement in split_script(step.script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO sessions (id, backend, created_at, last_used, working_dir) "
        "VALUES (?, 'claude', 1.0, 1.0, '/srv')", ("a" * 32,))
    if jobs_tables_present:
        for statement in split_script(migrations(StoreDialect.SQLITE)[2].script):
            conn.execute(statement)
    conn.close()
    store = SqliteStore(path)
    assert store.get("a" * 32).backend == "claude"
    assert store.count() == 1
    assert store.jobs.list(owner=None, sees_all=True).records == []
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_concurrent_writers_of_one_process_queue_and_lose_nothing(tmp_path) -> None:
    """Writers of one process now queue on a lock of the store instead of SQLite's busy
    handler; every turn still counts and a failing transaction releases the lock."""
    store = SqliteStore(tmp_path / "sessions.db", busy_timeout=30)
    session = store.create(backend="claude", working_dir=str(tmp_path), tags=["api"])
    created: list[str] = []

    def work(i: int) -> None:
        for _ in range(10):
            store.record_turn(session.id, usage=TokenUsage(1, 1), status="completed")
        created.append(store.create(backend="codex", working_dir=str(tmp_path)).id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = store.get(session.id)
    assert again.turn_count == 160
    assert again.token_usage.input_tokens == 160
    assert store.count() == 17 and len(set(created)) == 16
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the transaction
        with store._write(store._conn()):
            store._conn().execute("INSERT INTO no_such_table VALUES (1)")
    store.record_turn(session.id)  # the lock was released by the failed transaction
    done = threading.Event()
    threading.Thread(target=lambda: (store.record_turn(session.id), done.set())).start()
    assert done.wait(10)
    assert store.get(session.id).turn_count == 162
