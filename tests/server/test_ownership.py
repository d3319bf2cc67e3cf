"""Sessions belong to the API key that created them: another key cannot list, read,
continue or delete them; an admin key (``server.admin_key_ids``) sees all; without keys
nothing changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.fakes import fake

from clinvk.core.keys import key_id

KEY_A = "sk-owner-a-0123456789abcdef"
KEY_B = "sk-owner-b-0123456789abcdef"
ADMIN = "sk-admin-0123456789abcdef00"


def _h(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


@pytest.fixture
def keyed(app_factory, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CLINVK_API_KEYS", f"{KEY_A},{KEY_B},{ADMIN}")
    app = app_factory({"server.admin_key_ids": [key_id(ADMIN)]})
    return app.test_client()


def _prompt(client, key: str, workdir: Path, **extra: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/prompt", headers=_h(key), json={
        "backend": "claude", "prompt": fake("hi", reply="ok"), "workdir": str(workdir),
        **extra})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["data"]


def _ids(client, key: str, **query: Any) -> list[str]:
    resp = client.get("/api/v1/sessions", headers=_h(key), query_string=query)
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()["data"]
    assert data["total"] == len(data["sessions"])
    return [s["id"] for s in data["sessions"]]


def test_another_key_never_sees_a_session(keyed, tmp_path) -> None:
    mine = _prompt(keyed, KEY_A, tmp_path)["session_id"]
    theirs = _prompt(keyed, KEY_B, tmp_path)["session_id"]
    assert _ids(keyed, KEY_A) == [mine]
    assert _ids(keyed, KEY_B) == [theirs]
    assert _ids(keyed, KEY_B, backend="claude") == [theirs]
    for path in (f"/api/v1/sessions/{mine}", f"/api/v1/sessions/{mine[:8]}"):
        resp = keyed.get(path, headers=_h(KEY_B))
        assert resp.status_code == 404, resp.get_json()
    resp = keyed.post("/api/v1/prompt", headers=_h(KEY_B), json={
        "prompt": "continue it", "session_id": mine})
    assert resp.status_code == 404, resp.get_json()
    assert keyed.delete(f"/api/v1/sessions/{mine}", headers=_h(KEY_B)).status_code == 404
    # still there for its owner, who can continue and delete it
    assert keyed.get(f"/api/v1/sessions/{mine}", headers=_h(KEY_A)).status_code == 200
    _prompt(keyed, KEY_A, tmp_path, session_id=mine, prompt=fake("again", reply="ok"))
    assert keyed.delete(f"/api/v1/sessions/{mine}", headers=_h(KEY_A)).status_code == 200


def test_a_prefix_only_matches_the_callers_own_sessions(keyed, tmp_path) -> None:
    ids = [_prompt(keyed, KEY_A if i % 2 else KEY_B, tmp_path)["session_id"]
           for i in range(12)]
    mine = [sid for i, sid in enumerate(ids) if i % 2]
    for sid in mine:
        resp = keyed.get(f"/api/v1/sessions/{sid[:4]}", headers=_h(KEY_A))
        # ambiguous only among A's own sessions; B's never show up as candidates
        body = resp.get_json()
        if resp.status_code == 409 or resp.status_code == 400:
            assert set(body["details"]["candidates"]) <= set(mine)
        else:
            assert resp.status_code == 200 and body["data"]["id"] == sid


def test_an_admin_key_sees_and_manages_every_session(keyed, tmp_path) -> None:
    a = _prompt(keyed, KEY_A, tmp_path)["session_id"]
    b = _prompt(keyed, KEY_B, tmp_path)["session_id"]
    assert set(_ids(keyed, ADMIN)) == {a, b}
    assert keyed.get(f"/api/v1/sessions/{a}", headers=_h(ADMIN)).status_code == 200
    assert keyed.delete(f"/api/v1/sessions/{b}", headers=_h(ADMIN)).status_code == 200


def test_rows_from_before_ownership_are_visible_to_admins_only(keyed, tmp_path, app_factory
                                                               ) -> None:
    a = _prompt(keyed, KEY_A, tmp_path)["session_id"]
    store = keyed.application.extensions["clinvk"].store
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE sessions SET owner = NULL WHERE id = ?", (a,))
    conn.commit()
    conn.close()
    assert _ids(keyed, KEY_A) == []
    assert keyed.get(f"/api/v1/sessions/{a}", headers=_h(KEY_A)).status_code == 404
    assert _ids(keyed, ADMIN) == [a]


def test_without_keys_every_caller_sees_every_session(client, tmp_path) -> None:
    for _ in range(2):
        resp = client.post("/api/v1/prompt", json={
            "backend": "claude", "prompt": fake("hi", reply="ok"), "workdir": str(tmp_path)})
        assert resp.status_code == 200
    assert client.get("/api/v1/sessions").get_json()["data"]["total"] == 2


def test_an_existing_database_gets_the_owner_column(tmp_path) -> None:
    """A store written by the previous schema version opens, its rows owned by nobody."""
    from clinvk.core.ownership import Principal
    from clinvk.core.store.sqlite import SqliteStore

    path = tmp_path / "old.db"
    store = SqliteStore(path)
    old = store.create(backend="claude", working_dir=str(tmp_path))
    store.close()
    conn = sqlite3.connect(path)  # back to version 1: no owner column, no later tables
    version_1 = {"sessions", "session_tags", "session_counts", "tag_counts"}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                 "AND name NOT LIKE 'sqlite_%'").fetchall():
        if table not in version_1:
            conn.execute(f"DROP TABLE {table}")
    conn.execute("DROP INDEX sessions_by_owner")
    conn.execute("ALTER TABLE sessions DROP COLUMN owner")
    conn.execute("ALTER TABLE sessions DROP COLUMN record_json")  # added by 009
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.get(old.id).owner is None
    someone = Principal("0" * 24)
    assert store.list(visible_to=someone).sessions == []
    assert store.list(visible_to=Principal("0" * 24, admin=True)).total == 1
    new = store.create(backend="claude", working_dir=str(tmp_path), owner=someone.owner)
    assert [s.id for s in store.list(visible_to=someone).sessions] == [new.id]
    assert store.count(visible_to=someone) == 1 and store.count() == 2
    store.close()
