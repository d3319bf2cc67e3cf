"""Unit tests of the CLI's pieces: task-file validation, argument routing, exit-code
mapping, durations, interruption handling (no backend processes; see test_cli.py for those).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from clinvk.cli import interrupts
from clinvk.cli.commands.sessions import parse_age
from clinvk.cli.interrupts import run_interruptible
from clinvk.cli.output import exit_for_result
from clinvk.cli.render import one_line, time_ago
from clinvk.cli.root import cli
from clinvk.cli.taskfiles import load_chain_file, load_parallel_file, parse_document
from clinvk.core.errors import InvalidRequest


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def no_stdin() -> str:
    raise AssertionError("stdin must not be read")


# ---------------------------------------------------------------------------- task files


def test_json_and_yaml_task_files_load_to_the_same_requests(tmp_path: Path):
    doc = {"tasks": [
        {"backend": "claude", "prompt": "a", "name": "first", "model": "fast",
         "approval_mode": "auto", "sandbox_mode": "read-only", "max_turns": 3,
         "system_prompt": "be brief", "extra": ["--verbose"], "timeout_secs": 5,
         "workdir": "sub"},
        {"backend": "codex", "prompt": "b", "dry_run": True, "id": "t2"},
    ], "max_parallel": 2, "fail_fast": True}
    yaml_text = """
tasks:
  - backend: claude
    prompt: a
    name: first
    model: fast
    approval_mode: auto
    sandbox_mode: read-only
    max_turns: 3
    system_prompt: be brief
    extra: [--verbose]
    timeout_secs: 5
    workdir: sub
  - {backend: codex, prompt: b, dry_run: true, id: t2}
max_parallel: 2
fail_fast: true
"""
    from_json = load_parallel_file(write(tmp_path, "t.json", json.dumps(doc)), no_stdin)
    from_yaml = load_parallel_file(write(tmp_path, "t.yml", yaml_text), no_stdin)
    assert from_json == from_yaml
    first = from_json.tasks[0]
    assert first.name == "first" and from_json.tasks[1].name == "t2"
    assert first.request.extra_flags == ["--verbose"] and first.request.timeout_secs == 5.0
    assert first.request.workdir == str(tmp_path / "sub")  # relative to the file
    assert (from_json.max_parallel, from_json.fail_fast) == (2, True)


def test_a_bare_list_and_stdin_are_accepted(tmp_path: Path):
    spec = load_parallel_file("-", lambda: '[{"prompt": "x", "workdir": "w"}]')
    assert spec.tasks[0].request.backend is None  # the default backend applies later
    assert spec.tasks[0].request.workdir == str(Path.cwd() / "w")
    chain = load_chain_file("-", lambda: "steps:\n  - {prompt: p, name: one}\n"
                                         "pass_working_dir: true\n")
    assert chain.steps[0].name == "one" and chain.pass_working_dir is True
    assert chain.stop_on_failure is None


@pytest.mark.parametrize(("text", "needles"), [
    ('{"tasks": [{"prompt": "a"}, {"prompt": "b", "max_turns": "5"}]}',
     ["tasks[1]", "max_turns", "non-negative integer", "'5'"]),
    ('{"tasks": [{"prompt": "a", "promt": "b"}]}',
     ["tasks[0]", "unknown field 'promt'", "did you mean 'prompt'"]),
    ('{"tasks": [{"name": "lint", "backend": "codex"}]}',
     ["tasks[0] ('lint')", "prompt: missing"]),
    ('{"tasks": [{"prompt": "a", "approval_mode": "yolo"}]}',
     ["tasks[0]", "approval_mode", "default, auto, none, always"]),
    ('{"tasks": [{"prompt": "a", "extra": ["--x", 3]}]}', ["tasks[0]", "extra", "item 1"]),
    ('{"tasks": [{"prompt": "a", "ephemeral": false}]}', ["tasks[0]", "ephemeral"]),
    ('{"tasks": [{"prompt": ""}]}', ["tasks[0]", "prompt", "empty"]),
    ('{"tasks": ["do it"]}', ["tasks[0]", "expected an object"]),
    ('{"tasks": []}', ["tasks", "empty"]),
    ('{"task": []}', ["unknown field 'task'", "did you mean 'tasks'"]),
    ('{"tasks": [{"prompt": "a"}], "max_parallel": 0}', ["max_parallel", ">= 1"]),
    ('{"tasks": [{"prompt": "a"},]}', ["invalid JSON", "line 1"]),
    ("42", ["expected an object with 'tasks'"]),
])
def test_malformed_task_files_name_the_task_and_field(tmp_path: Path, text: str,
                                                      needles: list[str]):
    path = write(tmp_path, "tasks.json", text)
    with pytest.raises(InvalidRequest) as info:
        load_parallel_file(path, no_stdin)
    message = info.value.message
    assert message.startswith(path)
    for needle in needles:
        assert needle in message
    assert "\n" not in message


def test_yaml_syntax_errors_carry_the_line(tmp_path: Path):
    path = write(tmp_path, "steps.yaml", "steps:\n  - prompt: a\n  - prompt: [b\n")
    with pytest.raises(InvalidRequest, match=r"invalid YAML at line \d+"):
        load_chain_file(path, no_stdin)
    with pytest.raises(InvalidRequest, match="cannot read"):
        load_chain_file(str(tmp_path / "missing.json"), no_stdin)
    assert parse_document("a: 1", "<stdin>") == {"a": 1}  # no extension: JSON, then YAML


def test_chain_options_are_checked(tmp_path: Path):
    path = write(tmp_path, "c.json", '{"steps": [{"prompt": "a"}], "stop_on_failure": "yes"}')
    with pytest.raises(InvalidRequest, match="stop_on_failure: expected true or false"):
        load_chain_file(path, no_stdin)


# ---------------------------------------------------------------------------- small pieces


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400),
    ("7", 7 * 86400), ("1.5d", 1.5 * 86400), (" 3D ", 3 * 86400),
])
def test_parse_age(text: str, seconds: float):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["0", "0d", "-1d", "30x", "", "d"])
def test_parse_age_rejects(text: str):
    with pytest.raises(click.BadParameter):
        parse_age(text)


def test_time_ago_and_one_line():
    stamp = "2027-01-15T08:00:00.000Z"
    base = _ts(stamp)
    assert time_ago(stamp, now=base + 0.5) == "just now"
    assert time_ago(stamp, now=base + 42) == "42s ago"
    assert time_ago(stamp, now=base + 125) == "2m ago"
    assert time_ago(stamp, now=base + 3 * 3600) == "3h ago"
    assert time_ago(stamp, now=base + 2 * 86400) == "2d ago"
    assert time_ago(stamp, now=base + 30 * 86400) == "2027-01-15"
    assert time_ago("not a time", now=base) == "not a time"
    assert one_line("  a\n b  ", 10) == "a b"
    assert one_line("ééééééé", 4) == "ééé\u2026"  # cut by characters, never mid-UTF-8


def _ts(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(("status", "code", "expected"), [
    ("ok", 0, 0), ("failed", 3, 3), ("failed", 0, 1), ("failed", None, 1),
    ("failed", -9, 137), ("failed", 300, 1), ("timeout", None, 124), ("cancelled", None, 130),
])
def test_exit_codes_follow_the_result(status: str, code: int | None, expected: int):
    assert exit_for_result(SimpleNamespace(status=status, exit_code=code)) == expected


def test_run_interruptible_returns_values_and_reraises_errors():
    assert run_interruptible(lambda: 42, lambda: None) == (42, False)

    def boom() -> None:
        raise InvalidRequest("nope")

    with pytest.raises(InvalidRequest):
        run_interruptible(boom, lambda: None)


def test_run_interruptible_cancels_until_the_work_ends(monkeypatch: pytest.MonkeyPatch):
    stop = threading.Event()
    cancels = []
    real_sleep = time.sleep
    calls = {"n": 0}

    def sleep(seconds: float) -> None:  # the first wait in the main thread is "Ctrl-C"
        if threading.current_thread() is threading.main_thread():
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt
        real_sleep(seconds)

    def cancel() -> None:
        cancels.append(1)
        stop.set()

    monkeypatch.setattr(interrupts.time, "sleep", sleep)
    value, interrupted = run_interruptible(lambda: stop.wait(10) and "stopped", cancel)
    assert interrupted and value == "stopped" and cancels


# ---------------------------------------------------------------------------- routing


def test_a_first_word_that_is_no_command_is_the_prompt(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path):
    monkeypatch.setenv("CLINVK_HOME", str(tmp_path))
    monkeypatch.delenv("CLINVK_CONFIG", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["--dry-run", "-b", "gemini", "explain", "this"])
    assert result.exit_code == 2 and "Got unexpected extra argument" in result.output
    result = runner.invoke(cli, ["--dry-run", "-b", "gemini", "explain this"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Would execute: ") and "gemini --output" in result.output
    assert "'explain this'" in result.output
    result = runner.invoke(cli, ["--dry-run", "--", "version"])  # a prompt named like a command
    assert result.exit_code == 0 and "<<< version" in result.output
    result = runner.invoke(cli, ["--config", str(tmp_path / "none.yaml"), "hello"])
    assert result.exit_code == 2 and "file not found" in result.output
    result = runner.invoke(cli, ["chian", "-f", "x"])
    assert result.exit_code == 2 and "did you mean 'chain'" in result.output


def test_help_lists_the_prompt_options_and_every_command():
    result = CliRunner().invoke(cli, ["--help"], prog_name="clinvk")
    assert result.exit_code == 0
    assert "Usage: clinvk [OPTIONS] PROMPT | COMMAND [ARGS]..." in result.output
    for option in ("--backend", "--output-format", "--continue", "--ephemeral", "--dry-run",
                   "--timeout", "--approval-mode", "--sandbox-mode", "--system-prompt",
                   "--max-turns"):
        assert option in result.output
    for sub in (["resume"], ["sessions", "list"], ["sessions", "clean"], ["parallel"],
                ["chain"], ["compare"], ["config", "show"], ["completion"]):
        sub_help = CliRunner().invoke(cli, [*sub, "--help"])
        assert sub_help.exit_code == 0, sub


def test_help_and_a_prompt_import_only_the_commands_they_use(tmp_path: Path):
    """The registry loads a command module on use: ``--help`` and a prompt never load the
    server or the orchestration commands."""
    probe = (
        "import sys\n"
        "from clinvk.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('clinvk.cli.commands.',"
        " 'clinvk.server')))\n"
        "print('LOADED', ' '.join(loaded), file=sys.stderr)\n"
    )
    env = {**os.environ, "CLINVK_HOME": str(tmp_path)}
    env.pop("CLINVK_CONFIG", None)
    for argv, expected in ((["--help"], {"clinvk.cli.commands.run"}),
                           (["--dry-run", "hello"], {"clinvk.cli.commands.run"}),
                           (["config", "path"], {"clinvk.cli.commands.config"})):
        done = subprocess.run([sys.executable, "-c", probe, *argv], env=env,
                              capture_output=True, text=True, timeout=60)
        line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
        assert set(line.split()[1:]) == expected, (argv, done.stderr)
