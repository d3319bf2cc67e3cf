"""Behaviour kept by the speed-ups of docs/performance.md (no timing here: the benchmarks in
bench/ measure speed; these tests only pin down that the faster code does the same thing)."""

from __future__ import annotations

import os
import threading

import pytest
from marshmallow import Schema, fields

from clinvk.core import policy
from clinvk.core.errors import PolicyViolation
from clinvk.server.errors import Blueprint

# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize("prefix", policy.BUILTIN_BLOCKED_PREFIXES)
def test_builtin_prefixes_still_block_their_literal_and_resolved_paths(prefix: str) -> None:
    for path in {prefix, os.path.realpath(prefix)}:
        for candidate in (path, path + "/sub/dir"):
            with pytest.raises(PolicyViolation):
                policy.check_workdir(candidate)


def test_a_directory_outside_every_prefix_passes(tmp_path) -> None:
    policy.check_workdir(str(tmp_path.resolve()))


def test_configured_prefixes_are_resolved_on_every_check(tmp_path) -> None:
    """Only the built-in system prefixes are resolved once; a configured symlink that is
    re-pointed takes effect at the next check."""
    a, b, link = tmp_path / "a", tmp_path / "b", tmp_path / "link"
    a.mkdir()
    b.mkdir()
    link.symlink_to(a)
    with pytest.raises(PolicyViolation):
        policy.check_workdir(str(a), blocked=[str(link)])
    policy.check_workdir(str(b), blocked=[str(link)])
    link.unlink()
    link.symlink_to(b)
    policy.check_workdir(str(a), blocked=[str(link)])
    with pytest.raises(PolicyViolation):
        policy.check_workdir(str(b), blocked=[str(link)])


# --------------------------------------------------------------------------- request schemas


class CountingSchema(Schema):
    instances = 0
    name = fields.String(required=True)

    def __init__(self, *args, **kwargs) -> None:
        type(self).instances += 1
        super().__init__(*args, **kwargs)


def test_argument_schema_classes_are_instantiated_once_per_route() -> None:
    from flask import Flask
    from flask.views import MethodView
    from flask_smorest import Api

    app = Flask("speedups")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = Api(app)
    blp = Blueprint("t", __name__, url_prefix="/t")

    @blp.route("/echo")
    class Echo(MethodView):
        @blp.arguments(CountingSchema)
        def post(self, args):
            return {"name": args["name"]}

    api.register_blueprint(blp)
    created = CountingSchema.instances
    client = app.test_client()
    results: list[tuple[int, object]] = []

    def call(i: int) -> None:
        resp = client.post("/t/echo", json={"name": f"n{i}"})
        results.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[1]["name"] for r in results) == sorted(f"n{i}" for i in range(20))
    assert {r[0] for r in results} == {200}
    assert CountingSchema.instances == created  # no instance per request
    bad = client.post("/t/echo", json={})
    assert bad.status_code == 400  # validation still runs on the shared instance
    spec = api.spec.to_dict()
    assert "Counting" in spec["components"]["schemas"]  # documented as before


# --------------------------------------------------------------------------- session writes


def test_concurrent_writers_of_one_process_queue_and_lose_nothing(tmp_path) -> None:
    """Writers of one process now queue on a lock of the store instead of SQLite's busy
    handler; every turn still counts and a failing transaction releases the lock."""
    from clinvk.core.events import TokenUsage
    from clinvk.core.store.sqlite import SqliteStore

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


# --------------------------------------------------------------------------- Flask hooks


def test_hooks_are_checked_for_coroutines_once_not_per_request(client, monkeypatch) -> None:
    """GatewayFlask remembers ensure_sync's answer for plain functions."""
    import flask.app

    assert client.get("/health").status_code == 200  # every hook seen once
    assert client.get("/api/v1/nope").status_code == 404
    checked: list[object] = []
    original = flask.app.iscoroutinefunction  # what Flask's ensure_sync calls
    monkeypatch.setattr(flask.app, "iscoroutinefunction",
                        lambda func: checked.append(func) or original(func))
    for _ in range(3):
        assert client.get("/health").status_code == 200
        assert client.get("/api/v1/nope").status_code == 404
    assert checked == []


def test_non_functions_still_go_through_flasks_own_check(app) -> None:
    """Functions and bound methods come back as they are; others (partials) still go
    through Flask's own check."""
    import functools

    def plain() -> str:
        return "x"

    class View:
        def get(self) -> str:
            return "y"

    partial = functools.partial(plain)
    assert app.ensure_sync(plain) is plain and app.ensure_sync(plain) is plain
    assert app.ensure_sync(partial) is partial
    method = View().get
    assert app.ensure_sync(method) is method and app.ensure_sync(View().get)() == "y"
