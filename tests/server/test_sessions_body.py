"""The session bodies of the native API are built without a marshmallow dump per row (a
page of 100 sessions is the whole cost of a listing); they must stay exactly what the
documented schemas produce, field order included, and the JSON writer must write every
value the stdlib did."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import orjson
import pytest

from clinvk.core.events import TokenUsage, utc_timestamp
from clinvk.core.store import Session
from clinvk.server.native.schemas.responses import SessionListSchema, SessionSchema
from clinvk.server.responses import json_bytes

BASE = 1_800_000_000.0


def _sessions() -> list[Session]:
    made = []
    for i in range(4):
        made.append(Session(
            id=f"{i:02x}" + "c" * 30, backend=("claude", "codex", "gemini")[i % 3],
            backend_session_id=None if i == 0 else f"native-{i}",
            created_at=utc_timestamp(BASE + i), last_used=utc_timestamp(BASE + i + 0.5),
            working_dir=f"/srv/p{i}", model=None if i % 2 else "sonnet",
            initial_prompt=f"prompt {i} — ✓", title=f"prompt {i} — ✓",
            status=("active", "completed", "error", "paused")[i], turn_count=i,
            token_usage=TokenUsage(100 * i, 10 * i, i, 0, None if i % 2 else 0.25 * i),
            tags=["api", "ci"][: i % 3], metadata={"i": i, "deep": {"list": [i]}} if i else {},
            error_message="failed" if i == 2 else None,
            parent_id=None if i < 3 else "00" + "c" * 30, owner=f"key_{i}" if i else None))
    return made


@pytest.fixture
def filled(app, client):
    app.extensions["clinvk"].store._insert_many(_sessions())
    return client


def test_list_body_is_what_its_schema_dumps(filled) -> None:
    body = filled.get("/api/v1/sessions?limit=3").get_json()["data"]
    assert len(body["sessions"]) == 3 and body["next_cursor"]
    assert SessionListSchema().dump(body) == body
    assert list(body) == list(SessionListSchema().fields)
    for session in body["sessions"]:
        assert list(session) == list(SessionSchema().fields)  # no owner, schema order
        assert list(session["token_usage"]) == list(
            SessionSchema().fields["token_usage"].schema.fields)
    rest = filled.get(f"/api/v1/sessions?limit=3&cursor={body['next_cursor']}").get_json()
    assert SessionListSchema().dump(rest["data"]) == rest["data"]


def test_get_body_is_what_its_schema_dumps(filled) -> None:
    for session in _sessions():
        body = filled.get(f"/api/v1/sessions/{session.id}").get_json()["data"]
        assert SessionSchema().dump(body) == body
        assert list(body) == list(SessionSchema().fields)
        assert body["tags"] == session.tags and body["metadata"] == session.metadata


def test_bodies_are_compact_utf8_in_the_handlers_order(filled) -> None:
    raw = filled.get("/api/v1/sessions?limit=1").get_data()
    compact = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":"))
    assert raw == compact.encode() + b"\n"
    assert raw.startswith(b'{"success":true,"data":{"sessions":[{"id":"03')
    assert "prompt 3 — ✓".encode() in raw  # UTF-8 as is, not \\u escapes


@pytest.mark.parametrize("body", [
    {"price": Decimal("1.50")},  # only the stdlib provider writes these
    {1: "int key", "k": [1, 2]},
    {"when": dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)},
    {"big": 2**70},
])
def test_values_orjson_refuses_are_written_as_flask_writes_them(app, body) -> None:
    with app.app_context():
        expected = app.json.dumps(body, separators=(",", ":")) + "\n"
        assert json_bytes(body).decode() == expected


def test_plain_values_are_written_like_the_stdlib(app) -> None:
    body = {"s": "é\u2028\"\\/\n", "n": [0, -1, 2**63 - 1, 0.1, 1.5, True, None], "e": {}}
    with app.app_context():
        assert json.loads(json_bytes(body)) == body
        assert json_bytes(body).decode() == json.dumps(
            body, ensure_ascii=False, separators=(",", ":")) + "\n"


def _old_list_body(store, envelope: bool = True, **query) -> bytes:
    """The listing body as it was built before record_json: each row's dict, trimmed of
    its owner, then the whole body encoded at once."""
    page = store.list(**query)
    records = [{k: v for k, v in r.items() if k != "owner"} for r in page.records]
    data = {"sessions": records, "total": page.total, "limit": page.limit,
            "offset": page.offset, "next_cursor": page.next_cursor}
    return json_bytes({"success": True, "data": data} if envelope else data)


def test_list_body_is_byte_for_byte_the_records_body(app, filled) -> None:
    store = app.extensions["clinvk"].store
    first = filled.get("/api/v1/sessions?limit=3")
    with app.app_context():
        assert first.get_data() == _old_list_body(store, limit=3)
        cursor = first.get_json()["data"]["next_cursor"]
        rest = filled.get(f"/api/v1/sessions?limit=3&cursor={cursor}").get_data()
        assert rest == _old_list_body(store, limit=3, cursor=cursor)
        assert filled.get("/api/v1/sessions?tag=api").get_data() == _old_list_body(
            store, tag="api")
        empty = filled.get("/api/v1/sessions?backend=codex&status=paused").get_data()
        assert empty == _old_list_body(store, backend="codex", status="paused")
        assert b'"sessions":[]' in empty


def test_list_body_without_the_envelope_is_the_records_body(app_factory) -> None:
    app = app_factory({"server.response_envelope": False})
    store = app.extensions["clinvk"].store
    store._insert_many(_sessions())
    raw = app.test_client().get("/api/v1/sessions?limit=3").get_data()
    with app.app_context():
        assert raw == _old_list_body(store, envelope=False, limit=3)
    assert raw.startswith(b'{"sessions":[{"id":"03')


def _listed(client, sid: str) -> bytes:
    """The session's item in the listing and its GET body, each re-encoded in order."""
    items = client.get("/api/v1/sessions?limit=1000").get_json()["data"]["sessions"]
    [item] = [s for s in items if s["id"] == sid]
    return orjson.dumps(item)


def test_a_row_changed_by_each_write_path_lists_what_get_shows(app, filled) -> None:
    store = app.extensions["clinvk"].store

    def same(sid: str) -> None:
        shown = filled.get(f"/api/v1/sessions/{sid}").get_json()["data"]
        assert _listed(filled, sid) == orjson.dumps(shown)

    s = store.create(backend="claude", working_dir="/srv/w", tags=["x"], metadata={"a": 1},
                     owner="key_9", initial_prompt="hello\nworld")
    same(s.id)
    store.record_turn(s.id, usage=TokenUsage(5, 7, 1, 2, 0.125), backend_session_id="n-1",
                      model="opus", status="error", error_message="boom")
    same(s.id)
    store.record_turn(s.id, usage=TokenUsage(1, 1), status="completed", turns=0)
    same(s.id)
    for fields in ({"status": "paused"}, {"tags": ["y", "ü"]}, {"metadata": {"b": [1.5]}},
                   {"title": "  new   title "}, {"error_message": "note"}):
        store.update(s.id, **fields)
        same(s.id)
    with store.busy(s.id):
        same(s.id)
    lease = store.new_lease()
    born = store.create(backend="codex", working_dir="/srv/w", lease=lease)
    same(born.id)
    store.record_turn(born.id, usage=TokenUsage(3, 4), release=lease)
    same(born.id)


def test_a_page_with_a_record_orjson_refuses_is_written_as_before(app, filled) -> None:
    # An integer beyond 64 bits in metadata: orjson cannot encode it, so the row's
    # record_json is NULL and its page is built as records, which Flask's provider writes.
    store = app.extensions["clinvk"].store
    s = store.create(backend="claude", working_dir="/srv/w", metadata={"big": 2**70 + 1})
    raw = filled.get("/api/v1/sessions?limit=10").get_data()
    with app.app_context():
        assert raw == _old_list_body(store, limit=10)
    assert b'"big":1180591620717411303425' in raw  # exact, not 1.1805916207174113e+21
    shown = filled.get(f"/api/v1/sessions/{s.id}").get_data()
    assert b'"big":1180591620717411303425' in shown


