"""The real claude, codex and gemini CLIs driven through clinvk's engine, against stub APIs.

Each test runs per backend. Between them, every argv shape clinvk builds for a mode it
supports is accepted by the real CLI at least once (see ARGV COVERAGE in the docstrings and
``docs/backends.md``, "Compatibility with the real CLIs").
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from stubs import TOOL_COMMAND

from clinvk.core.backends.base import RunOptions
from clinvk.core.types import RunStatus
from realcli.harness import BACKENDS, kill_all, ps_lines

SYSTEM_MARKER = "SYSTEM-MARKER-7f3a: answer briefly."

# What the model saw as the model name, per requested alias.
FIRST_TURN_MODEL = {"claude": ("fast", "haiku"), "codex": ("balanced", "gpt-5.5"),
                    "gemini": ("balanced", "gemini-2.5-pro")}


def model_seen(backend: str, rec) -> str:
    if backend == "gemini":
        return rec.path.split("/models/", 1)[1].split(":", 1)[0]
    return str(rec.json.get("model"))


def conversation_text(rec) -> str:
    return json.dumps(rec.json)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_result_then_resumed_stream_with_tool(world, backend):
    """Turn 1 as a result object; turn 2 (``session_id``) streamed, running a shell tool.

    The stub numbers its reply by the user prompts in the history it receives, so
    "(turn 2)" proves the CLI really sent turn 1 along: resume resumed. In turn 2 the stub
    asks for ``echo hello-from-tool``; the real CLI runs it, which must show up as a
    tool_use/tool_result pair in clinvk's unified stream.

    ARGV COVERAGE: claude --model, --permission-mode acceptEdits, --max-turns,
    --append-system-prompt, then --permission-mode default + variadic --allowedTools before
    --resume; codex -m, -s read-only, -c approval_policy="on-request", system prompt on stdin,
    then exec resume with -m, -c sandbox_mode="workspace-write", -c approval_policy="never",
    extra --disable; gemini -m, --approval-mode auto_edit, then --approval-mode yolo (the
    only mode with a shell tool in headless runs), --debug, --resume.
    """
    alias, expected_model = FIRST_TURN_MODEL[backend]
    first = world.run(backend, "say hi", model=alias, system_prompt=SYSTEM_MARKER,
                      approval_mode="auto", sandbox_mode="read-only" if backend == "codex"
                      else None, max_turns=3)
    result = first.result
    assert result.status == RunStatus.OK, (result.error, result.stderr_tail)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["output"] == "Hello from stub (turn 1)"
    assert data["exit_code"] == 0 and data["backend"] == backend
    assert data["session_id"] and data["backend_session_id"]
    assert data["token_usage"]["input_tokens"] > 0 and data["token_usage"]["output_tokens"] > 0
    stub = world.stubs[backend]
    calls = stub.model_calls()
    assert len(calls) == 1, stub.replies()
    assert expected_model in model_seen(backend, calls[0])
    assert SYSTEM_MARKER in conversation_text(calls[0]), "system prompt never reached the model"
    if backend == "codex":
        meta = json.loads(calls[0].headers["x-codex-turn-metadata"])
        assert meta["sandbox_mode"] == "read-only"

    extra = {"claude": ["--allowedTools", "Bash(echo *)"], "codex": ["--disable", "plugins"],
             "gemini": []}[backend]
    prepared = world.engine.prepare(world.request(
        None, "RUN_TOOL please", session_id=data["session_id"],
        approval_mode="always" if backend == "claude" else "none",
        sandbox_mode="workspace" if backend == "codex" else None,
        verbose=backend == "gemini", extra_flags=extra))
    handle = world.engine.start(prepared)
    lines = [event.to_json() for event in handle.events() if event is not None]
    second = handle.result
    assert second.status == RunStatus.OK, (second.error, second.stderr_tail)
    events = [json.loads(line) for line in lines]
    types = [e["type"] for e in events]
    assert types[0] == "init" and types[-1] == "done" and types.count("done") == 1, types
    assert "error" not in types
    assert all(e["session_id"] == data["session_id"] and e["backend"] == backend for e in events)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))

    uses = [e["content"] for e in events if e["type"] == "tool_use"]
    results = [e["content"] for e in events if e["type"] == "tool_result"]
    assert len(uses) == 1 and len(results) == 1, types
    assert TOOL_COMMAND in json.dumps(uses[0]["input"])
    assert uses[0]["tool_id"] == results[0]["tool_id"]
    assert "hello-from-tool" in str(results[0]["output"]) and results[0]["is_error"] is False
    assert types.index("tool_use") < types.index("tool_result")
    final = "Tool said: hello-from-tool (turn 2)"
    messages = [e["content"] for e in events if e["type"] == "message"]
    assert "".join(m["text"] for m in messages).strip().endswith(final)
    if backend != "codex":  # codex --json prints whole messages, never deltas
        assert any(m["is_partial"] for m in messages) and len(messages) > 1
    assert events[-1]["content"]["output"].endswith(final)
    assert second.output.endswith(final)
    assert second.backend_session_id == data["backend_session_id"]

    calls = stub.model_calls()
    assert [c.reply for c in calls[1:]] == [f"tool_call {TOOL_COMMAND!r} (turn 2)",
                                            f"text {final!r}"]
    history = conversation_text(calls[1])
    assert "say hi" in history and "Hello from stub (turn 1)" in history
    if backend == "codex":
        meta = json.loads(calls[1].headers["x-codex-turn-metadata"])
        assert meta["sandbox_mode"] == "workspace-write"
    session = world.store.get(data["session_id"])
    assert session.turn_count == 2 and session.status == "completed"
    assert session.backend_session_id == data["backend_session_id"]


# backend -> status -> substrings the clinvk error must contain
API_ERRORS = {
    "claude": {401: ["Invalid API key", "401"], 500: ["API Error: 500", "(stub injected)"]},
    # codex 0.171 replaces a 500's message with its own "high demand" text (no status).
    "codex": {401: ["401 Unauthorized", "Incorrect API key provided"], 500: ["high demand"]},
    "gemini": {401: ["API key not valid", "API status 401"],
               500: ["Internal error", "API status 500"]},
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_api_errors_surface_clearly(world, backend):
    """401 and 500 from the model API end as failed runs with the API's message.

    Both run at once, to keep the suite short.
    ARGV COVERAGE: claude's plain new-run argv; codex -s workspace-write (401) and the plain
    argv (500); gemini with no -m at all (401: model = the backend name, so its model-router
    call runs first) and --approval-mode default (500).
    """
    runs = {}
    options = {("codex", 401): {"sandbox_mode": "workspace"},
               ("gemini", 401): {"model": "gemini"},
               ("gemini", 500): {"approval_mode": "always"}}

    def go(status: int) -> None:
        runs[status] = world.run(backend, f"FAIL_{status} please",
                                 **options.get((backend, status), {}))

    threads = [threading.Thread(target=go, args=(s,)) for s in (401, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, needles in API_ERRORS[backend].items():
        run = runs[status]
        result = run.result
        assert result.status == RunStatus.FAILED, (status, result.output)
        assert result.exit_code not in (0, None)
        for needle in needles:
            assert needle in (result.error or ""), (status, result.error)
        assert run.types[-1] == "error" and run.types.count("error") == 1, run.types
        assert run.events[-1].content["code"] == "backend_error"
        assert run.events[-1].content["message"] == result.error
        assert not any(e.type == "message" and "Hello" in e.content["text"] for e in run.events)
        session = world.store.get(result.session_id)
        assert session.status == "error" and session.error_message == result.error
    replies = world.stubs[backend].replies()
    assert "error 401" in replies and "error 500" in replies
    if backend == "gemini":
        assert "-m" not in runs[401].result.command
        routes = [r.path for r in world.stubs[backend].requests]
        assert any(p.endswith(":generateContent") for p in routes), routes


@pytest.mark.parametrize("backend", BACKENDS)
def test_ephemeral_leaves_no_backend_session(world, backend):
    """An ephemeral run keeps no clinvk session and no CLI session: the CLI cannot resume it.

    ARGV COVERAGE: claude --no-session-persistence + --permission-mode plan; codex --ephemeral
    -s danger-full-access; gemini --approval-mode plan (its chat file is deleted afterwards).
    """
    sandbox = {"codex": "full"}.get(backend, "read-only")
    run = world.run(backend, "say hi", ephemeral=True, sandbox_mode=sandbox)
    result = run.result
    assert result.status == RunStatus.OK, (result.error, result.stderr_tail)
    assert result.output == "Hello from stub (turn 1)"
    assert result.session_id is None and result.backend_session_id
    assert world.store.list().total == 0
    box = world.boxes[backend]
    assert box.session_files() == []

    # The CLI itself must not find the conversation any more.
    backend_obj = world.engine.registry.get(backend)
    inv = backend_obj.build_invocation(RunOptions(prompt="still there?",
                                                  workdir=str(world.workdir),
                                                  resume_id=result.backend_session_id))
    proc = subprocess.run(inv.argv, input=inv.stdin, capture_output=True, text=True,
                          cwd=world.workdir, env=backend_obj.child_env(), timeout=60,
                          check=False)
    assert proc.returncode != 0, proc.stdout
    parsed = backend_obj.parse_output(proc.stdout, proc.stderr, proc.returncode)
    assert parsed.is_error
    assert "turn 2" not in proc.stdout
    assert len(world.stubs[backend].model_calls()) == 1


# The tool shells of claude and gemini run in a session of their own (setsid), outside the
# CLI's process group: gemini 0.61 never kills them on SIGTERM, claude 2.1 does only once the
# tool has run for about 3 s. The runner reaches them through the per-run marker variable
# in their environment (clinvk.core.process.RUN_MARKER_VAR); these tests prove it on both paths.

# (first, retry) timeouts: long enough for the CLI to start and run the tool on an idle
# machine (gemini's Node start takes about 3 s); a run whose tool did not start in time (a
# loaded machine) is repeated once with the longer one. codex stays under 10 s: after that
# its exec_command tool returns "still running" to the model and the turn ends normally.
TIMEOUTS = {"claude": (10, 20), "codex": (5, 8), "gemini": (12, 30)}
# claude's own clean-up needs the tool to have run this long; the timeout test lets it,
# the cancel test below does not (there only clinvk's marker sweep can end the tool).
SETTLE = {"claude": 3.5}


def sleep_watch(world, backend: str) -> tuple[list[float], threading.Event, threading.Thread]:
    """Watch ``ps`` for the stub's sleep command; the list gets the time it was first seen."""
    stub = world.stubs[backend]
    seen_at: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen_at:
            if ps_lines(stub.sleep_command):
                seen_at.append(time.monotonic())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    return seen_at, done, watcher


def sweep(world, backend: str) -> list[str]:
    """Whatever of the run is still alive (killed at once, so a defect is reported once)."""
    left = ps_lines(world.stubs[backend].sleep_command) + world.leftovers()
    kill_all(left)
    return left


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_kills_cli_and_all_children(world, backend):
    """The stub makes the CLI run a long sleep; clinvk's timeout must end the whole tree.

    ARGV COVERAGE: claude --permission-mode bypassPermissions (IS_SANDBOX=1 as root);
    codex -c approval_policy="never"; gemini --approval-mode yolo.
    """
    stub = world.stubs[backend]
    for timeout in TIMEOUTS[backend]:
        seen_at, done, watcher = sleep_watch(world, backend)
        started = time.monotonic()
        try:
            run = world.run(backend, "RUN_SLEEP please", approval_mode="none",
                            timeout_secs=timeout)
        finally:
            done.set()
            watcher.join()
        elapsed = time.monotonic() - started
        left = sweep(world, backend)
        if seen_at and started + timeout - seen_at[0] >= SETTLE.get(backend, 0):
            break
    result = run.result
    assert seen_at, f"the tool never started within {timeout} s: {stub.replies()}"
    assert stub.replies()[0] == f"tool_call {stub.sleep_command!r} (turn 1)"
    assert result.status == RunStatus.TIMEOUT, (result.status, result.error, result.stderr_tail)
    assert "timed out" in result.error
    assert run.types[-1] == "error" and run.events[-1].content["code"] == "timeout"
    assert elapsed < timeout + 5
    assert left == [], "left running after the timeout:\n" + "\n".join(left)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancel_as_the_tool_starts_kills_cli_and_all_children(world, backend):
    """Cancelling a run (client gone, fail-fast, shutdown) the moment its tool has started.

    Same kill path as a timeout, at the moment the CLIs' own clean-up is least ready.
    """
    prepared = world.engine.prepare(world.request(
        backend, "RUN_SLEEP please", approval_mode="none", timeout_secs=90))
    handle = world.engine.start(prepared)
    seen_at, done, watcher = sleep_watch(world, backend)
    consumer = threading.Thread(target=lambda: list(handle.events()))
    consumer.start()
    try:
        deadline = time.monotonic() + 60
        while not seen_at and consumer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        handle.cancel()
        consumer.join(30)
    finally:
        done.set()
        watcher.join()
        handle.close()
    left = sweep(world, backend)
    assert seen_at, f"the tool never started: {world.stubs[backend].replies()}"
    assert not consumer.is_alive()
    assert handle.result is not None and handle.result.status == RunStatus.CANCELLED
    assert left == [], "left running after the cancellation:\n" + "\n".join(left)


def test_the_world_builds_one_engine_for_threads_that_ask_at_once(world):
    """The cause of the flaky "<backend> not found": two threads built the engine at once,
    one reading the config file while the other rewrote it. Many threads, one engine, and
    every backend at its installed binary."""
    seen = []
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait()
        seen.append(world.engine)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(engine) for engine in seen}) == 1
    for name in BACKENDS:
        backend = world.engine.registry.get(name)
        assert backend.available and backend.executable_path() == str(world.binaries[name])
