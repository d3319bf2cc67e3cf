"""Each session row's ``record_json`` (clinvk.core.store.encoded), over every store
implementation: every write path refreshes it in the same transaction, the migration
fills it for existing rows, and ``list_json`` pages are ``list`` pages encoded."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from support.stores import FakeClock, open_at, sql, stale_records

from clinvk.core.events import TokenUsage
from clinvk.core.ownership import Principal
from clinvk.core.store import FirstTurn, Store
from clinvk.core.store.encoded import RECORD_JSON_VERSION, encode_record
from clinvk.core.store.rows import COLUMNS

WD = "/srv/project"


def _listed(record: dict) -> bytes:
    return orjson.dumps({k: v for k, v in record.items() if k != "owner"})


def assert_current(store: Store) -> None:
    """Every row's encoding is its columns' and a JSON page is the records' page."""
    assert stale_records(store) == []
    page, encoded = store.list(limit=1000), store.list_json(limit=1000)
    assert encoded.encoded == [_listed(r) for r in page.records]
    assert (encoded.total, encoded.limit, encoded.offset, encoded.next_cursor) == (
        page.total, page.limit, page.offset, page.next_cursor)


def test_every_write_path_refreshes_the_encoded_record(store: Store, clock: FakeClock) -> None:
    s = store.create(backend="claude", working_dir=WD, tags=["a", "ü"], metadata={"k": [1]},
                     model="sonnet", owner="key_1", initial_prompt="first line\nsecond")
    assert_current(store)
    for kwargs in ({"usage": TokenUsage(10, 20, 3, 4, 0.5), "backend_session_id": "n-1"},
                   {"status": "error", "error_message": "boom", "model": "opus"},
                   {"usage": TokenUsage(1, 1, cost_usd=0.25), "status": "completed",
                    "turns": 0},
                   {}):
        clock.advance(1)
        store.record_turn(s.id, **kwargs)
        assert_current(store)
    for fields in ({"status": "paused"}, {"tags": ["b"]}, {"tags": []},
                   {"metadata": {"deep": {"x": 0.1}}}, {"title": "  a   title  "},
                   {"error_message": "note"}, {"error_message": None}, {}):
        store.update(s.id, **fields)
        assert_current(store)
    with store.busy(s.id) as lease:
        assert_current(store)
        lease.renew(60)
    lease = store.new_lease()
    born = store.create(backend="codex", working_dir=WD, lease=lease, parent_id=s.id)
    assert_current(store)
    store.record_turn(born.id, usage=TokenUsage(2, 3), release=lease)
    assert_current(store)
    store.create(backend="gemini", working_dir=WD, status="completed",
                 first_turn=FirstTurn("f" * 32, TokenUsage(4, 5), "half"))
    assert_current(store)
    store.delete(born.id)
    assert_current(store)
    clock.advance(10_000)
    store.cleanup(older_than_seconds=5_000)
    assert_current(store)
    assert store.count() == 0


def test_a_column_changed_without_its_encoding_is_caught(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD)
    sql(store, "UPDATE sessions SET turn_count = turn_count + 1 WHERE id = ?", (s.id,))
    assert stale_records(store) == [s.id]
    store.update(s.id, title="refreshed")  # any write of the row encodes it anew
    assert stale_records(store) == []


def test_bulk_inserted_rows_are_encoded(store: Store) -> None:
    made = [store.create(backend="claude", working_dir=WD) for _ in range(3)]
    for session in made:
        store.delete(session.id)
    store._insert_many(made)  # type: ignore[attr-defined]
    assert_current(store)
    assert store.count() == 3


def test_json_pages_follow_filters_cursors_and_owners(store: Store, clock: FakeClock) -> None:
    for i in range(12):
        clock.advance(1)
        store.create(backend=("claude", "codex")[i % 2], working_dir=f"/srv/p{i % 3}",
                     tags=["t"] if i % 4 == 0 else [], owner=f"key_{i % 2}",
                     status=("active", "paused")[i % 3 == 0])
    for query in ({}, {"backend": "codex"}, {"status": "paused"}, {"tag": "t"},
                  {"working_dir": "/srv/p1"}, {"visible_to": Principal("key_1")},
                  {"tag": "t", "backend": "claude"}, {"offset": 5}):
        cursor = None
        while True:
            page = store.list(limit=3, cursor=cursor, **query)
            encoded = store.list_json(limit=3, cursor=cursor, **query)
            assert encoded.encoded == [_listed(r) for r in page.records]
            assert (encoded.total, encoded.next_cursor) == (page.total, page.next_cursor)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def _drop_to_version_8(location: str) -> None:
    """The database as a clinvk before migration 009 left it: no record_json column."""
    store = open_at(location)
    sql(store, "ALTER TABLE sessions DROP COLUMN record_json")
    if location.startswith("postgresql://"):
        sql(store, "UPDATE clinvk_schema SET version = ?", (RECORD_JSON_VERSION - 1,))
        from clinvk.core.store.postgresql import database

        database._MIGRATED.clear()  # as a new process would
    else:
        sql(store, f"PRAGMA user_version = {RECORD_JSON_VERSION - 1}")
    store.close()


@pytest.mark.parametrize("batch", [2, 20_000])
def test_migration_009_encodes_every_existing_row(location: str, batch: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_at(location)
    made = [store.create(backend="claude", working_dir=WD, tags=[f"t{i}"],
                         metadata={"i": i}) for i in range(5)]
    store.record_turn(made[0].id, usage=TokenUsage(1, 2, cost_usd=0.1))
    expected = store.list(limit=100).records
    store.close()
    _drop_to_version_8(location)
    dialect = "postgresql" if location.startswith("postgresql://") else "sqlite"
    monkeypatch.setattr(f"clinvk.core.store.{dialect}.database.BACKFILL_BATCH", batch)
    store = open_at(location)
    try:
        if dialect == "sqlite":  # the rewritten table's pages do not stay in the -wal file
            assert Path(location + "-wal").stat().st_size == 0
        assert stale_records(store) == []
        rows = sql(store, "SELECT record_json FROM sessions WHERE record_json IS NULL")
        assert rows == []
        assert store.list_json(limit=100).encoded == [_listed(r) for r in expected]
    finally:
        store.close()


def test_encode_record_is_the_listed_record_without_its_owner(store: Store) -> None:
    s = store.create(backend="claude", working_dir=WD, owner="key_7", metadata={"é": 1.5})
    [row] = sql(store, f"SELECT {', '.join(COLUMNS)} FROM sessions")
    encoded = encode_record(row)
    assert encoded is not None and b'"owner"' not in encoded
    assert orjson.loads(encoded) == {k: v for k, v in store.get(s.id).to_dict().items()
                                     if k != "owner"}
