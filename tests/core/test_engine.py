"""The engine end to end with the fake CLIs as real subprocesses."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from support.engine import logged, make_engine, request
from support.fakes import BACKENDS, FAKE_BIN
from support.procs import wait_until

from clinvk.core.engine import PromptRequest
from clinvk.core.errors import (
    BackendUnavailable,
    InvalidRequest,
    PolicyViolation,
    Saturated,
    SessionBusy,
    UnknownBackend,
)
from clinvk.core.types import RunStatus


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_run_then_resume_with_backend_session_id(env, backend):
    engine = make_engine(env)
    first = engine.run(request(env, backend))
    assert first.status == RunStatus.OK, first.error
    assert first.output == "Hello from stub (turn 1)"
    assert first.backend_session_id and first.session_id
    assert first.token_usage.input_tokens > 0 and first.token_usage.output_tokens > 0

    second = engine.run(request(env, backend, "again", session_id=first.session_id[:8]))
    assert second.status == RunStatus.OK, second.error
    assert second.output == "Hello from stub (turn 2)"
    assert second.backend_session_id == first.backend_session_id
    assert second.session_id == first.session_id
    assert first.backend_session_id in logged(env)[-1]["argv"]

    session = engine.store.get(first.session_id)
    assert session.turn_count == 2 and session.status == "completed"
    assert session.backend_session_id == first.backend_session_id
    total = first.token_usage.output_tokens + second.token_usage.output_tokens
    assert session.token_usage.output_tokens == total


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", ["--help", "-p x", "-"])
def test_option_like_prompts_reach_the_backend_as_text(env, backend, prompt):
    result = make_engine(env).run(request(env, backend, prompt, ephemeral=True))
    assert result.status == RunStatus.OK, result.error
    entry = logged(env)[-1]
    assert entry["stdin"].rstrip("\n") == prompt
    assert prompt not in entry["argv"][1:] or prompt == "-"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_events_have_one_terminal_event(env, backend):
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, backend)))
    events = [e for e in handle.events() if e is not None]
    assert events[0].type == "init"
    assert [e.type for e in events].count("done") == 1 and events[-1].type == "done"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.session_id == handle.result.session_id for e in events)
    text = "".join(e.content["text"] for e in events if e.type == "message")
    assert text == "Hello from stub (turn 1)"
    assert events[-1].content["output"] == text


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_error_is_a_failure_with_its_message(env, backend):
    result = make_engine(env).run(request(env, backend, 'FAKE{"error": 401} hi'))
    assert result.status == RunStatus.FAILED
    assert result.exit_code not in (0, None)
    assert result.error
    session = make_engine(env).store.get(result.session_id)
    assert session.status == "error" and session.error_message == result.error


def test_timeout_kills_the_hung_backend_and_its_grandchild(env):
    pidfile = env / "pids"
    prompt = f'FAKE{{"hang": true, "grandchild": true, "pidfile": "{pidfile}"}} hi'
    started = time.monotonic()
    result = make_engine(env).run(request(env, "claude", prompt, timeout_secs=1))
    assert result.status == RunStatus.TIMEOUT
    assert time.monotonic() - started < 1 + 2
    pids = [int(p) for p in pidfile.read_text().split()]
    time.sleep(0.3)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(
        ).split(") ", 1)[1][:1]


def test_dry_run_creates_a_completed_session_and_starts_nothing(env):
    engine = make_engine(env)
    result = engine.run(request(env, "codex", "--help", dry_run=True))
    assert result.status == RunStatus.OK and result.exit_code == 0
    assert result.output.startswith(
        f"Would execute: {FAKE_BIN / 'codex'} exec --skip-git-repo-check --json -")
    assert result.output.endswith("<<< --help")
    assert engine.store.get(result.session_id).status == "completed"
    assert logged(env) == []


def test_ephemeral_keeps_no_session(env):
    engine = make_engine(env)
    result = engine.run(request(env, "codex", ephemeral=True))
    assert result.status == RunStatus.OK and result.session_id is None
    assert "--ephemeral" in logged(env)[-1]["argv"]
    assert engine.store.list().total == 0


def test_concurrent_continuation_is_busy(env):
    engine = make_engine(env)
    first = engine.run(request(env, "claude"))
    slow = engine.start(engine.prepare(
        request(env, "claude", 'FAKE{"delay": 1} more', session_id=first.session_id)))
    with pytest.raises(SessionBusy):
        engine.start(engine.prepare(request(env, "claude", "x", session_id=first.session_id)))
    for _ in slow.events():
        pass
    assert slow.result.status == RunStatus.OK
    again = engine.run(request(env, "claude", "x", session_id=first.session_id))
    assert again.status == RunStatus.OK


def test_validation_errors_name_the_field(env):
    engine = make_engine(env)
    with pytest.raises(InvalidRequest) as exc:
        engine.prepare(request(env, "claude", "  "))
    assert exc.value.field == "prompt"
    with pytest.raises(UnknownBackend) as exc:
        engine.prepare(request(env, "nope"))
    assert "claude, codex, gemini" in exc.value.message
    with pytest.raises(InvalidRequest) as exc:
        engine.prepare(request(env, "claude", approval_mode="sometimes"))
    assert exc.value.field == "approval_mode"
    with pytest.raises(InvalidRequest) as exc:
        engine.prepare(PromptRequest(prompt="x", backend="claude", workdir="relative/dir"))
    assert exc.value.field == "workdir"


def test_server_policy(env):
    engine = make_engine(env, server_mode=True)
    with pytest.raises(PolicyViolation):
        engine.prepare(PromptRequest(prompt="x", backend="claude", workdir="/etc"))
    link = env / "link-to-etc"
    link.symlink_to("/etc")
    with pytest.raises(PolicyViolation) as exc:
        engine.prepare(PromptRequest(prompt="x", backend="claude", workdir=str(link)))
    assert "blocked" in exc.value.message
    with pytest.raises(PolicyViolation) as exc:
        engine.prepare(request(env, "claude", approval_mode="none"))
    assert exc.value.field == "approval_mode"
    with pytest.raises(PolicyViolation) as exc:
        engine.prepare(request(env, "claude", extra_flags=["--resume", "abc"]))
    assert exc.value.field == "extra"
    prepared = engine.prepare(request(env, "claude", extra_flags=["--allowedTools", "Read"]))
    assert prepared.invocation.argv[-2:] == ["--allowedTools", "Read"]
    with pytest.raises(InvalidRequest):
        engine.prepare(request(env, "claude", timeout_secs=10_000))


def test_saturation(env):
    engine = make_engine(env, server_mode=True, **{"server.max_concurrent_runs": 1,
                                                   "server.queue_timeout_secs": 0})
    busy = engine.start(engine.prepare(request(env, "claude", 'FAKE{"delay": 1} x')))
    try:
        with pytest.raises(Saturated):
            engine.start(engine.prepare(request(env, "codex")))
    finally:
        busy.close()


def test_missing_binary_is_unavailable(env):
    engine = make_engine(env, **{"backends.gemini.command": str(env / "missing-gemini")})
    with pytest.raises(BackendUnavailable):
        engine.prepare(request(env, "gemini"))
    assert engine.prepare(request(env, "gemini", dry_run=True))


def test_cancel_from_another_thread_records_the_session(env):
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, "codex", 'FAKE{"hang": true} x')))
    threading.Timer(0.5, handle.cancel).start()
    events = [e for e in handle.events() if e is not None]
    assert events[-1].type == "error" and handle.result.status == "cancelled"
    assert engine.store.get(handle.result.session_id).status == "error"


def test_garbage_lines_are_not_assistant_text(env):
    result = make_engine(env).run(request(env, "claude", 'FAKE{"garbage": true} hi'))
    assert result.status == RunStatus.OK
    assert result.output == "Hello from stub (turn 1)"


def test_heartbeats_continue_while_lines_produce_no_events(env):
    """Status-only lines must not starve a client's keep-alive."""
    script = env / "chatty"
    script.write_text(
        "#!/bin/sh\n"
        "for i in 1 2 3 4 5 6; do echo '{\"type\":\"system\",\"subtype\":\"status\"}'; "
        "sleep 0.1; done\n")
    script.chmod(0o755)
    engine = make_engine(env, **{"backends.claude.command": str(script)})
    handle = engine.start(engine.prepare(request(env, "claude", ephemeral=True)))
    items = list(handle.events(heartbeat=0.2))
    assert items.count(None) >= 2


def test_config_dry_run_makes_every_run_a_dry_run(env):
    engine = make_engine(env, **{"unified_flags.dry_run": True})
    result = engine.run(request(env, "codex"))
    assert result.dry_run and result.output.startswith(f"Would execute: {FAKE_BIN / 'codex'} exec")
    assert logged(env) == []


# --------------------------------------------------------------------------- when things happen


@pytest.mark.parametrize("backend", BACKENDS)
def test_turn_is_recorded_when_the_cli_prints_its_result(env, backend):
    """The session write happens while the CLI shuts down, not after it exited."""
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, backend, 'FAKE{"linger": 3} hi')))
    runner = threading.Thread(target=lambda: list(handle.events()))
    runner.start()
    try:
        session_id = handle.session.id
        assert wait_until(lambda: engine.store.get(session_id).turn_count == 1, timeout=10)
        # ...while the CLI is still alive (it lingers 3 s after its result line)
        assert handle._process is not None and handle._process.outcome is None
        assert engine.store.get(session_id).status == "completed"
    finally:
        runner.join(timeout=20)
    session = engine.store.get(session_id)
    assert handle.result.status == RunStatus.OK
    assert session.turn_count == 1 and session.status == "completed"
    assert session.token_usage == handle.result.token_usage
    assert session.backend_session_id == handle.result.backend_session_id


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crash_after_a_successful_result_amends_the_turn(env, backend):
    engine = make_engine(env)
    result = engine.run(request(env, backend, 'FAKE{"exit_code": 3} hi'))
    assert result.status == RunStatus.FAILED and result.exit_code == 3
    session = engine.store.get(result.session_id)
    assert session.turn_count == 1  # amended, not counted twice
    assert session.status == "error" and "code 3" in session.error_message
    assert session.token_usage == result.token_usage  # not added twice


def test_a_cancel_after_the_result_amends_the_turn(env):
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, "claude", 'FAKE{"linger": 5} hi')))
    runner = threading.Thread(target=lambda: list(handle.events()))
    runner.start()
    assert wait_until(lambda: engine.store.get(handle.session.id).turn_count == 1, timeout=10)
    handle.cancel()
    runner.join(timeout=20)
    session = engine.store.get(handle.session.id)
    assert handle.result.status == "cancelled"
    assert session.turn_count == 1 and session.status == "error"


def test_a_failed_session_write_starts_no_cli_and_holds_nothing(env):
    from clinvk.core import process as runner_module
    from clinvk.core.errors import StoreError
    from clinvk.core.store.sqlite import SqliteStore

    engine = make_engine(env)
    engine.store = SqliteStore(engine.store.path, busy_timeout=0.2)
    engine.store.count()  # schema ready
    blocker = sqlite3.connect(engine.store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        with pytest.raises(StoreError):
            engine.start(engine.prepare(request(env, "claude", "the secret prompt")))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert runner_module.active_runs() == []
    assert not any("the secret prompt" in (run.get("stdin") or "") for run in logged(env))
    assert engine.run(request(env, "claude")).status == RunStatus.OK  # nothing was left held


def test_a_new_session_is_busy_during_its_first_turn(env):
    engine = make_engine(env)
    first = engine.start(engine.prepare(request(env, "claude", 'FAKE{"delay": 1} hi')))
    session_id = first.session.id
    with pytest.raises(SessionBusy):
        engine.start(engine.prepare(request(env, "claude", "x", session_id=session_id)))
    for _ in first.events():
        pass
    assert first.result.status == RunStatus.OK
    again = engine.run(request(env, "claude", "x", session_id=session_id))
    assert again.status == RunStatus.OK and engine.store.get(session_id).turn_count == 2


def _session_writes(engine) -> list[str]:
    """The write transactions the store's write connection begins from now on."""
    begun: list[str] = []
    engine.store._writer_conn().set_trace_callback(
        lambda sql: begun.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None)
    return begun


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_result_only_run_writes_its_new_session_once_with_the_turn(env, backend):
    """Nobody knows a synchronous run's new session before its answer: no row (and no
    lease) before the spawn, one insert with the turn in it when the result arrives."""
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, backend, 'FAKE{"delay": 1} hi',
                                                 live_events=False)))
    writes = _session_writes(engine)
    assert handle.session_id and handle.session is None
    assert engine.store.count() == 0  # not yet listed: nobody can address it
    events = [e for e in handle.events() if e is not None]
    assert {e.session_id for e in events} == {handle.session_id}
    session = engine.store.get(handle.session_id)
    assert len(writes) == 1, writes
    assert session.turn_count == 1 and session.status == "completed"
    assert session.token_usage == handle.result.token_usage
    assert session.backend_session_id == handle.result.backend_session_id
    again = engine.run(request(env, backend, "again", session_id=handle.session_id))
    assert again.output.endswith("(turn 2)") and engine.store.get(again.session_id).turn_count == 2


def test_a_live_run_still_writes_its_new_session_before_the_spawn(env):
    engine = make_engine(env)
    writes = _session_writes(engine)
    handle = engine.start(engine.prepare(request(env, "claude")))
    assert handle.session is not None and len(writes) == 1  # the row, born busy
    list(handle.events())
    assert len(writes) == 2  # the turn


@pytest.mark.parametrize(("knob", "status"), [('{"exit_code": 3}', "error"),
                                              ('{"die_midstream": true}', "error"),
                                              ('{"error": 500}', "error")])
def test_a_result_only_run_that_fails_still_leaves_its_session(env, knob, status):
    engine = make_engine(env)
    result = engine.run(request(env, "claude", f"FAKE{knob} hi", live_events=False))
    assert result.status != RunStatus.OK
    session = engine.store.get(result.session_id)
    assert session.turn_count == 1 and session.status == status
    assert session.error_message == result.error


def test_a_handle_closed_unread_gives_its_lease_back(env):
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, "claude", 'FAKE{"delay": 5} hi')))
    handle.close()
    with engine.store.busy(handle.session.id):
        pass


def test_runs_inherit_the_environment_of_the_engines_start(env, monkeypatch):
    """The CLI gets the gateway's environment as it was when the engine was built, minus
    clinvk's own variables, plus the backend's configured env and its run's own id."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-at-start")
    monkeypatch.setenv("CLINVK_API_KEYS", "sk-clinvk-secret")
    engine = make_engine(env, **{"backends.codex.env": {"OPENAI_BASE_URL": "http://proxy"}})
    monkeypatch.setenv("OPENAI_ORG_ID", "org-changed-later")
    monkeypatch.setenv("OPENAI_PROJECT", "set-later")
    for _ in range(2):
        assert engine.run(request(env, "codex", ephemeral=True)).status == RunStatus.OK
    first, second = (run["env"] for run in logged(env))
    assert first["OPENAI_ORG_ID"] == "org-at-start" and "OPENAI_PROJECT" not in first
    assert first["OPENAI_BASE_URL"] == "http://proxy"
    assert not any(k == "CLINVK_API_KEYS" or "sk-clinvk-secret" in v for k, v in first.items())
    assert first["CLINVK_RUN_ID"] != second["CLINVK_RUN_ID"]  # the per-run marker
    assert {k: v for k, v in first.items() if k != "CLINVK_RUN_ID"} == \
        {k: v for k, v in second.items() if k != "CLINVK_RUN_ID"}
    # a new engine (a restarted gateway) sees the environment as it is now
    make_engine(env).run(request(env, "codex", ephemeral=True))
    assert logged(env)[-1]["env"]["OPENAI_PROJECT"] == "set-later"
