"""End-to-end tests of the `clinvk` command line: the installed entry point, run as a
subprocess against the fake claude/codex/gemini CLIs (tests/fakes), with a private
CLINVK_HOME per test. Every fake started records its pid; none may outlive its test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.clirun import FAKE_BIN, Cli


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("clinvk: error: "), proc.stderr
    assert "Usage:" not in proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------- the prompt


def test_each_prompt_is_a_new_session_and_continue_uses_the_backend_session_id(cli: Cli):
    first = cli("x")
    second = cli("x")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert first.stdout == "Hello from stub (turn 1)\n"
    assert second.stdout == "Hello from stub (turn 1)\n"  # not silently resumed
    sessions = cli.sessions()
    assert len(sessions) == 2 and sessions[0]["id"] != sessions[1]["id"]
    newest = sessions[0]
    assert newest["turn_count"] == 1 and newest["backend_session_id"]

    cont = cli("-c", "y")
    assert cont.returncode == 0, cont.stderr
    assert cont.stdout == "Hello from stub (turn 2)\n"
    argv = cli.runs()[-1]["argv"]
    assert argv[argv.index("--resume") + 1] == newest["backend_session_id"]
    after = {s["id"]: s for s in cli.sessions()}
    assert len(after) == 2
    assert after[newest["id"]]["turn_count"] == 2
    assert after[sessions[1]["id"]]["turn_count"] == 1


def test_auto_resume_is_opt_in_and_never_silent(cli: Cli, tmp_path: Path):
    (cli.home / "config.yaml").write_text("session:\n  auto_resume: true\n")
    other = tmp_path / "other"
    other.mkdir()
    assert cli("-b", "codex", "elsewhere", cwd=other).returncode == 0
    assert cli("start here").returncode == 0
    again = cli("and again")  # same backend, same directory: continued, and said so
    assert again.returncode == 0 and again.stdout.endswith("(turn 2)\n")
    assert "continuing session" in again.stderr and "auto_resume" in again.stderr
    fresh = cli("--ephemeral", "no memory")
    assert fresh.returncode == 0 and fresh.stdout.endswith("(turn 1)\n")
    assert sorted(s["turn_count"] for s in cli.sessions()) == [1, 2]


def test_output_formats_json_and_stream_json(cli: Cli, tmp_path: Path):
    proc = cli("-b", "codex", "-o", "json", "hi")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["backend"] == "codex" and result["status"] == "ok"
    assert result["output"] == "Hello from stub (turn 1)" and result["exit_code"] == 0
    assert result["session_id"] and result["backend_session_id"]
    assert result["token_usage"]["output_tokens"] > 0
    assert result["working_dir"] == str(tmp_path.resolve())

    proc = cli("-b", "gemini", "--output-format", "stream-json", "hi")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "init" and types[-1] == "done" and "message" in types
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert {e["backend"] for e in events} == {"gemini"}
    text = "".join(e["content"]["text"] for e in events if e["type"] == "message")
    assert text == "Hello from stub (turn 1)"
    assert events[-1]["content"]["output"] == text


def test_text_is_streamed_while_the_backend_still_runs(cli: Cli):
    proc = cli.popen('hi FAKE{"pause_after_first": 3}')
    try:
        first = os.read(proc.stdout.fileno(), 100)
        assert first.startswith(b"Hello"), first
        assert proc.poll() is None  # the rest has not even been written yet
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert first + out == b"Hello from stub (turn 1)\n"


def test_dry_run_prints_the_argv_and_runs_nothing(cli: Cli):
    proc = cli("--dry-run", "-b", "codex", "-m", "fast", "--", "--help me")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    # the Go wording: the binary by the path it resolves to, then the args
    assert line.startswith(f"Would execute: {FAKE_BIN / 'codex'} exec"), line
    assert "gpt-" in line and "'--help me'" in line
    data = cli.json("--dry-run", "-o", "json", "-b", "claude", "hello")
    assert data["command"][0] == "claude"  # machine-readable argv, as the backend runs it
    assert data["output"].startswith(f"Would execute: {FAKE_BIN / 'claude'} -p ")
    assert data["session_id"] is None
    assert cli.runs() == []
    assert cli.sessions() == []


def test_no_process_outlives_the_command(cli: Cli):
    """`clinvk prompt` returns only after what the run left behind outside its process
    group (a setsid'd tool process) is gone; the fixture checks every listed pid."""
    proc = cli('FAKE{"escape": true}')
    assert proc.returncode == 0, proc.stderr
    assert len(cli.pids()) == 2  # the fake and its sleeper
    assert cli.leftovers(wait=0.2) == []


def test_prompt_from_stdin(cli: Cli):
    proc = cli("-b", "codex", "-", input="a prompt\nfrom a pipe\n")
    assert proc.returncode == 0, proc.stderr
    assert cli.runs()[-1]["stdin"] == "a prompt\nfrom a pipe"
    assert cli.sessions()[0]["initial_prompt"] == "a prompt\nfrom a pipe"
    empty = cli("-", input="\n")
    assert empty.returncode == 2 and "empty" in empty.stderr


@pytest.mark.parametrize(("args", "code", "needle"), [
    (['FAKE{"error": 500}'], 1, "API Error: 500"),
    (["-b", "codex", 'FAKE{"exit_code": 7}'], 7, "code 7"),
    (["--timeout", "0.5", 'FAKE{"hang": true}'], 124, "timed out"),
    (["-c", "continue what?"], 1, "no session"),
    (["-w", "/does/not/exist", "x"], 2, "/does/not/exist"),
])
def test_exit_codes_and_one_line_errors(cli: Cli, args: list[str], code: int, needle: str):
    proc = cli(*args)
    assert proc.returncode == code, proc.stderr
    assert needle in one_line_error(proc)


def test_usage_and_config_errors_exit_2(cli: Cli):
    proc = cli("--no-such-option", "x")
    assert proc.returncode == 2 and "No such option" in proc.stderr
    proc = cli("sesions")
    assert proc.returncode == 2 and "did you mean 'sessions'" in proc.stderr
    (cli.home / "config.yaml").write_text("server:\n  port: lots\n")
    proc = cli("x")
    assert proc.returncode == 2
    assert "server.port" in proc.stderr and "line 2" in proc.stderr
    assert cli.runs() == []


def test_serve_refuses_an_unusable_store_before_any_worker(cli: Cli):
    """The store is checked (in a child of the master) before gunicorn starts: a corrupt
    file is one clear line and exit 1, not a worker that keeps failing to boot."""
    (cli.home / "sessions.db").write_bytes(b"not a database" * 400)
    proc = cli("serve", "--port", "1")
    assert proc.returncode == 1, proc.stderr
    assert "session store" in proc.stderr and "not a database" in proc.stderr
    assert "Traceback" not in proc.stderr and "Booting worker" not in proc.stderr


@pytest.mark.parametrize("args", [["x"], ["sessions", "list"], ["sessions", "clean"]])
def test_a_missing_config_file_is_an_error_for_every_command(cli: Cli, args: list[str]):
    proc = cli("--config", str(cli.home / "nowhere.yaml"), *args)
    assert proc.returncode == 2, proc.stdout
    assert "nowhere.yaml" in proc.stderr and "not found" in proc.stderr


def _wait_for_pids(cli: Cli, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(cli.pids()) < count:
        assert time.monotonic() < deadline, "the fake never started"
        time.sleep(0.05)
    time.sleep(0.2)  # let the fake reach its hang


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_backend_process_group_and_exits_130(cli: Cli, sig: int):
    # The fake ignores SIGTERM and has a grandchild that does too: only a group kill works.
    proc = cli.popen('FAKE{"hang": true, "ignore_sigterm": true, "grandchild": true}')
    try:
        _wait_for_pids(cli, 2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert cli.leftovers() == []
    session = cli.sessions()[0]
    assert session["status"] == "error" and session["turn_count"] == 1


def test_interrupting_parallel_stops_every_task(cli: Cli):
    tasks = cli.tmp / "tasks.json"
    tasks.write_text(json.dumps({"tasks": [
        {"backend": b, "prompt": 'FAKE{"hang": true}'} for b in ("claude", "codex", "gemini")
    ], "max_parallel": 2}))
    proc = cli.popen("parallel", "-f", str(tasks))
    try:
        _wait_for_pids(cli, 2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert cli.leftovers() == []
    assert len(cli.pids()) == 2  # the queued third task never started


# ---------------------------------------------------------------------------- resume


def test_resume_last_among_a_thousand_sessions(cli: Cli, tmp_path: Path):
    real = cli("-b", "codex", "first")
    assert real.returncode == 0, real.stderr
    target = cli.sessions()[0]
    now = time.time()
    clock = [now - 5000.0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here, elsewhere = tmp_path.resolve(), elsewhere.resolve()
    store = cli.store(clock=lambda: clock[0])
    backends = ("claude", "codex", "gemini")
    for i in range(995):  # older, resumable, every backend, two directories
        clock[0] = now - 5000.0 + i
        store.create(backend=backends[i % 3], working_dir=str(elsewhere if i % 2 else here),
                     initial_prompt=f"old {i}", backend_session_id=f"bogus-{i}")
    for i in range(5):  # newer than the target but never got a backend id
        clock[0] = now + 10 + i
        store.create(backend="codex", working_dir=str(here), initial_prompt=f"failed {i}")
    store.close()
    assert cli.json("sessions", "list", "--json", "-n", "1")["total"] == 1001

    proc = cli("resume", "--last", "follow up")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello from stub (turn 2)\n"
    argv = cli.runs()[-1]["argv"]
    assert target["backend_session_id"] in argv and "resume" in argv
    resumed = cli.json("sessions", "show", target["id"][:8], "--json")
    assert resumed["turn_count"] == 2

    # Filters: -b picks the newest resumable of that backend, --here the newest started here.
    dry = cli("resume", "--last", "-b", "gemini", "--dry-run", "x")
    assert dry.returncode == 0 and "bogus-992" in dry.stdout, dry.stdout + dry.stderr
    dry = cli("resume", "--last", "--here", "-b", "claude", "--dry-run", "x", cwd=elsewhere)
    assert dry.returncode == 0 and "bogus-993" in dry.stdout, dry.stdout + dry.stderr


def test_resume_by_prefix_and_its_usage_errors(cli: Cli):
    assert cli("-b", "gemini", "hello").returncode == 0
    session = cli.sessions()[0]
    proc = cli("resume", session["id"][:6], "again", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["session_id"] == session["id"] and result["output"].endswith("(turn 2)")
    argv = cli.runs()[-1]["argv"]
    assert argv[argv.index("--resume") + 1] == session["backend_session_id"]

    no_prompt = cli("resume", session["id"][:6])
    assert no_prompt.returncode == 2 and "missing PROMPT" in no_prompt.stderr
    assert cli("resume").returncode == 2
    assert cli("resume", "--last").returncode == 2
    wrong = cli("resume", session["id"][:6], "-b", "claude", "x")
    assert wrong.returncode == 2 and "gemini session" in one_line_error(wrong)
    missing = cli("resume", "abcdef12", "x")
    assert missing.returncode == 1 and "no session" in one_line_error(missing)


# ---------------------------------------------------------------------------- sessions


def test_sessions_list_show_delete_clean(cli: Cli, tmp_path: Path):
    now = time.time()
    clock = [now - 40 * 86400]
    store = cli.store(clock=lambda: clock[0])
    old = store.create(backend="claude", working_dir=str(tmp_path), initial_prompt="very old")
    clock[0] = now - 3600
    tagged = store.create(backend="codex", working_dir=str(tmp_path),
                          initial_prompt="fix the tests", tags=["ci"], backend_session_id="t-1")
    clock[0] = now - 60
    recent = store.create(backend="gemini", working_dir=str(tmp_path),
                          initial_prompt="write docs", status="completed")
    store.close()

    table = cli("sessions", "list")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split()[:3] == ["ID", "BACKEND", "STATUS"]
    assert [r.split()[0] for r in rows[1:4]] == [recent.id[:8], tagged.id[:8], old.id[:8]]
    assert "fix the tests" in table.stdout and "1h ago" in table.stdout

    ids = lambda *a: [s["id"] for s in cli.json("sessions", "list", "--json", *a)["sessions"]]  # noqa: E731
    assert ids("--backend", "codex") == [tagged.id]
    assert ids("--status", "completed") == [recent.id]
    assert ids("--tag", "ci") == [tagged.id]
    assert ids("--limit", "2") == [recent.id, tagged.id]

    show = cli("sessions", "show", tagged.id[:5])
    assert show.returncode == 0 and tagged.id in show.stdout and "t-1" in show.stdout
    assert cli.json("sessions", "show", tagged.id, "--json")["tags"] == ["ci"]

    dry = cli("sessions", "clean", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0 and "Would delete 1 session(s)" in dry.stdout
    assert old.id[:8] in dry.stdout and len(ids()) == 3
    cleaned = cli.json("sessions", "clean", "--json")  # default: session.retention_days = 30
    assert cleaned["session_ids"] == [old.id] and not cleaned["dry_run"]
    assert cli("sessions", "clean", "--older-than", "soon").returncode == 2

    deleted = cli("sessions", "delete", recent.id[:6])
    assert deleted.returncode == 0 and recent.id in deleted.stdout
    assert ids() == [tagged.id]
    gone = cli("sessions", "show", recent.id)
    assert gone.returncode == 1 and "not found" in one_line_error(gone)


# ---------------------------------------------------------------------------- orchestration


TASKS_JSON = {
    "tasks": [
        {"name": "slow", "backend": "claude", "prompt": 'one FAKE{"delay": 0.3}'},
        {"backend": "codex", "prompt": 'two FAKE{"reply": "second answer"}', "max_turns": 2},
        {"backend": "gemini", "prompt": 'three FAKE{"exit_code": 3}'},
    ],
    "max_parallel": 2,
}
TASKS_YAML = """\
# the same tasks as YAML
tasks:
  - name: slow
    backend: claude
    prompt: 'one FAKE{"delay": 0.3}'
  - {backend: codex, prompt: 'two FAKE{"reply": "second answer"}', max_turns: 2}
  - backend: gemini
    prompt: 'three FAKE{"exit_code": 3}'
max_parallel: 2
"""


def _essence(report: dict) -> list[tuple]:
    return [(r["index"], r["backend"], r["status"], r["exit_code"], r["output"], r.get("name"))
            for r in report["results"]]


def test_parallel_json_and_yaml_task_files_give_the_same_results(cli: Cli):
    (cli.tmp / "tasks.json").write_text(json.dumps(TASKS_JSON))
    (cli.tmp / "tasks.yaml").write_text(TASKS_YAML)
    from_json = cli("parallel", "-f", "tasks.json", "--json")
    from_yaml = cli("parallel", "--file", "tasks.yaml", "--json")
    assert (from_json.returncode, from_yaml.returncode) == (1, 1)  # one task failed
    a, b = json.loads(from_json.stdout), json.loads(from_yaml.stdout)
    assert _essence(a) == _essence(b) == [
        (0, "claude", "ok", 0, "Hello from stub (turn 1)", "slow"),
        (1, "codex", "ok", 0, "second answer", None),
        (2, "gemini", "failed", 3, "Hello from stub (turn 1)", None),
    ]
    assert (a["total_tasks"], a["completed"], a["failed"]) == (3, 2, 1)
    assert cli.sessions() == []  # always ephemeral


def test_parallel_text_progress_and_stdin(cli: Cli):
    tasks = {"tasks": [{"backend": "codex", "prompt": "alpha"},
                       {"backend": "claude", "prompt": "beta", "name": "second"}]}
    proc = cli("parallel", "-f", "-", "--max-parallel", "1", input=json.dumps(tasks))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Running 2 task(s), 1 at a time"
    progress = [line for line in lines if line.startswith("[")]
    assert [p.split()[:3] for p in progress] == [
        ["[1/2]", "codex", "running"], ["[1/2]", "codex", "ok"],
        ["[2/2]", "claude", "running"], ["[2/2]", "claude", "ok"]]
    assert progress[1].split()[3].endswith("s")  # elapsed
    assert "== task 2: claude ok" in proc.stdout and "2 tasks: 2 ok, 0 failed" in proc.stdout


def test_parallel_fail_fast_cancels_the_rest(cli: Cli):
    tasks = {"tasks": [{"backend": "claude", "prompt": 'FAKE{"error": 401}'},
                       {"backend": "codex", "prompt": 'FAKE{"hang": true}'},
                       {"backend": "gemini", "prompt": "never started"}],
             "max_parallel": 2}
    (cli.tmp / "t.json").write_text(json.dumps(tasks))
    proc = cli("parallel", "-f", "t.json", "--fail-fast", "--json")
    assert proc.returncode == 1, proc.stderr
    statuses = [r["status"] for r in json.loads(proc.stdout)["results"]]
    assert statuses == ["failed", "cancelled", "cancelled"]


def test_a_malformed_task_file_names_the_task_and_the_field(cli: Cli):
    (cli.tmp / "bad.yaml").write_text(
        "tasks:\n  - {backend: claude, prompt: ok}\n  - {backend: codex, prompt: x, "
        "max_turns: five}\n")
    proc = cli("parallel", "-f", "bad.yaml")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "tasks[1]" in line and "max_turns" in line and "five" in line
    (cli.tmp / "typo.json").write_text('{"steps": [{"backend": "claude", "promt": "x"}]}')
    proc = cli("chain", "-f", "typo.json")
    assert proc.returncode == 2
    assert "steps[0]" in proc.stderr and "did you mean 'prompt'" in proc.stderr
    assert cli.runs() == []


def test_chain_passes_previous_output_and_stops_on_failure(cli: Cli):
    steps = {"steps": [
        {"name": "draft", "backend": "claude", "prompt": 'write FAKE{"reply": "DRAFT-1"}'},
        {"name": "review", "backend": "codex", "prompt": "review this: {{previous}}"},
        {"name": "break", "backend": "gemini", "prompt": 'FAKE{"error": 500}'},
        {"name": "never", "backend": "claude", "prompt": "after: {{previous}}"},
    ]}
    (cli.tmp / "steps.json").write_text(json.dumps(steps))
    proc = cli("chain", "-f", "steps.json", "--stop-on-failure", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["total_steps"], data["completed_steps"], data["failed_step"]) == (4, 2, 3)
    assert [r["status"] for r in data["results"]] == ["ok", "ok", "failed", "skipped"]
    assert [r["step"] for r in data["results"]] == [1, 2, 3, 4]
    assert cli.runs()[1]["stdin"] == "review this: DRAFT-1"
    assert len(cli.runs()) == 3

    text = cli("chain", "-f", "steps.json")  # the file says nothing: continue on failure
    assert text.returncode == 1
    assert "== step 4: claude ok" in text.stdout and "4 steps: 3 ok, 1 failed" in text.stdout


def test_compare_side_by_side(cli: Cli):
    proc = cli("compare", "-b", "claude,codex", "same question")
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
             if line.split()[:1] in (["status"], ["exit"], ["time"])}
    assert table["status"] == ["ok", "ok"] and table["exit"] == ["0", "0"]
    assert all(t.endswith("s") for t in table["time"])
    assert "tokens (in/out)" in proc.stdout and "Total time:" in proc.stdout
    assert sorted(r["cli"] for r in cli.runs()) == ["claude", "codex"]

    data = cli.json("compare", "--all-backends", "--sequential", "--json", "-", input="hi")
    assert [r["backend"] for r in data["results"]] == ["claude", "codex", "gemini"]
    assert {r["status"] for r in data["results"]} == {"ok"} and data["prompt"] == "hi"
    assert cli.sessions() == []
    assert cli("compare", "x").returncode == 2
    assert cli("compare", "x", "-b", "claude,gpt").returncode == 2


# ---------------------------------------------------------------------------- config etc.


def test_config_show_set_path(cli: Cli):
    path = cli("config", "path")
    assert path.stdout.strip() == str(cli.home / "config.yaml")
    assert cli("config", "set", "server.port", "9100").returncode == 0
    assert cli("config", "set", "backends.codex.env.OPENAI_API_KEY", "sk-secret").returncode == 0
    bad = cli("config", "set", "server.port", "many")
    assert bad.returncode == 2 and "server.port" in bad.stderr

    cli.env["CLINVK_SERVER_HOST"] = "0.0.0.0"
    shown = cli("config", "show")
    assert shown.returncode == 0 and "sk-secret" not in shown.stdout
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()[2:]}
    assert rows["server.port"] == ["9100", "file"]
    assert rows["server.host"] == ["0.0.0.0", "env", "CLINVK_SERVER_HOST"]
    assert rows["server.workers"][-1] == "default"
    data = cli.json("config", "show", "backends.codex.env", "--json")
    assert data["values"] == [{"key": "backends.codex.env", "value": {"OPENAI_API_KEY": "****"},
                               "source": f"file:{cli.home / 'config.yaml'}"}]


def test_version_help_and_completion(cli: Cli):
    version = cli("version")
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0].startswith("clinvk ")
    assert [line.split()[0] for line in lines[1:]] == ["claude", "codex", "gemini"]
    assert "2.1.197" in lines[1] and "0.171.0" in lines[2] and "0.61.0" in lines[3]

    helped = cli("--help")
    assert helped.returncode == 0 and "Prompt options" in helped.stdout
    assert all(c in helped.stdout for c in ("resume", "sessions", "parallel", "chain",
                                            "compare", "config", "version", "completion"))
    script = cli("completion", "bash")
    assert script.returncode == 0 and "_CLINVK_COMPLETE=bash_complete" in script.stdout
    cli.env.update(_CLINVK_COMPLETE="bash_complete", COMP_WORDS="clinvk sess", COMP_CWORD="1")
    completed = cli()
    assert completed.stdout.split() == ["plain,sessions"]
