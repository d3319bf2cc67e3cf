"""Behaviour kept by the speed-ups of docs/performance.md (no timing here: the benchmarks in
bench/ measure speed; these tests only pin down that the faster code does the same thing)."""

from __future__ import annotations

import os
import sys
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


# --------------------------------------------------------------------------- run ledger


def _ledger_lines(path) -> set[str]:
    return set(path.read_text().splitlines()) if path.exists() else set()


def test_run_ledger_mirrors_concurrent_starts_and_ends(tmp_path) -> None:
    """Written by a background thread now: many runs starting and ending at once all end
    up in the file, and flush() waits for it."""
    import subprocess

    from clinvk.core.runner import RunLedger, _start_time

    ledger = RunLedger(tmp_path / "run" / "worker.runs")
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(24)]
    try:
        threads = [threading.Thread(target=ledger.add, args=(p.pid,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        assert _ledger_lines(ledger.path) == {f"{p.pid} {_start_time(p.pid)} -" for p in procs}
        threads = [threading.Thread(target=ledger.remove, args=(p.pid,)) for p in procs[:20]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        assert _ledger_lines(ledger.path) == {f"{p.pid} {_start_time(p.pid)} -"
                                              for p in procs[20:]}
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for p in procs[20:]:
        ledger.remove(p.pid)
    assert ledger.flush()
    assert ledger.path.read_text() == ""


def test_run_ledger_kill_orphaned_groups_reads_what_was_flushed(tmp_path) -> None:
    import subprocess

    from clinvk.core.runner import RunLedger, kill_orphaned_groups

    ledger = RunLedger(tmp_path / "worker.runs")
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ledger.add(proc.pid)
        assert ledger.flush()
        assert kill_orphaned_groups(ledger.path) == 1
        assert proc.wait(timeout=5) == -9
        assert not ledger.path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_ledger_unwritable_never_blocks_or_fails_a_run(tmp_path, caplog) -> None:
    from clinvk.core.runner import RunLedger

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ledger = RunLedger(blocker / "run" / "worker.runs")
    ledger.add(os.getpid())
    ledger.remove(os.getpid())
    assert ledger.flush()
    assert sum("cannot write the run ledger" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- session writes


def test_concurrent_writers_of_one_process_queue_and_lose_nothing(tmp_path) -> None:
    """Writers of one process now queue on a lock of the store instead of SQLite's busy
    handler; every turn still counts and a failing transaction releases the lock."""
    from clinvk.core.events import TokenUsage
    from clinvk.core.sessions import SessionStore

    store = SessionStore(tmp_path / "sessions.db", busy_timeout=30)
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


# --------------------------------------------------------------------------- backend priority


def _nice_of(pid: int) -> int:
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_backend_nice_lowers_the_whole_backend_group() -> None:
    from clinvk.core.runner import Limits, ProcessRun

    own = os.getpriority(os.PRIO_PROCESS, 0)
    script = "import subprocess, sys; subprocess.Popen(['sleep', '30']); print('up', flush=True)"
    run = ProcessRun([sys.executable, "-c", script + "; import time; time.sleep(30)"],
                     limits=Limits(nice=7, timeout=20))
    lines = run.lines()
    try:
        assert next(lines) == "up"
        pid = run.proc.pid
        assert _nice_of(pid) == min(19, own + 7)
        members = [int(p) for p in os.listdir("/proc") if p.isdigit()
                   and _pgid_of(int(p)) == pid]
        assert len(members) == 2  # the grandchild inherited the niceness
        assert all(_nice_of(p) == min(19, own + 7) for p in members)
        autogroup = f"/proc/{pid}/autogroup"
        if os.path.exists(autogroup):  # Linux autogroup: the backend's session group too
            assert open(autogroup).read().split()[-1] == str(min(19, own + 7))
    finally:
        run.cancel()
        for _ in lines:
            pass
    assert ProcessRun(["true"]).limits.nice == 0  # default: unchanged priority


def _pgid_of(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def test_backend_nice_is_a_server_setting(tmp_path) -> None:
    from clinvk.core.config import load_config
    from clinvk.core.engine import Engine, PromptRequest
    from clinvk.core.errors import ConfigError

    config_file = tmp_path / "config.yaml"
    config_file.write_text("server:\n  backend_nice: 20\n")
    with pytest.raises(ConfigError):
        load_config(str(config_file), env={})
    config_file.write_text("server:\n  backend_nice: 10\n")
    config = load_config(str(config_file), env={})
    request = PromptRequest(prompt="hi", backend="claude", workdir=str(tmp_path),
                            dry_run=True)
    server = Engine(config, None, server_mode=True)
    assert server.limits(server.prepare(request)).nice == 10
    cli = Engine(config, None)
    assert cli.limits(cli.prepare(request)).nice == 0  # the CLI runs at the user's priority


def test_run_ledger_reads_start_times_off_the_request_path(tmp_path, monkeypatch) -> None:
    """add() does not read /proc (the writer does, after a pause); a leader that is gone
    by then is left out of the file and still removed cleanly."""
    import subprocess

    from clinvk.core import runner

    reads: list[tuple[int, str]] = []
    real = runner._start_time

    def spy(pid: int):
        reads.append((pid, threading.current_thread().name))
        return real(pid)

    monkeypatch.setattr(runner, "_start_time", spy)
    ledger = runner.RunLedger(tmp_path / "worker.runs")
    alive = subprocess.Popen(["sleep", "30"], start_new_session=True)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    try:
        ledger.add(alive.pid, "m1")
        ledger.add(gone.pid, "m2")
        assert reads == []  # nothing read on the caller's thread
        assert ledger.flush()
        assert {name for _, name in reads} == {"clinvk-run-ledger"}
        assert ledger.path.read_text() == f"{alive.pid} {real(alive.pid)} m1\n"
        ledger.remove(gone.pid)
        ledger.remove(alive.pid)
        assert ledger.flush()
        assert ledger.path.read_text() == ""
    finally:
        alive.kill()
        alive.wait()


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
