"""The command line as the Go clinvk's users type it: global options after the subcommand,
its dry-run wording, short usage errors."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests
from support.clirun import FAKE_BIN, Cli
from support.services import free_port


def _config(cli: Cli, text: str) -> Path:
    path = cli.tmp / "go-config.yaml"
    path.write_text(text)
    return path


def test_config_after_the_subcommand_is_read(cli: Cli) -> None:
    path = _config(cli, "default_backend: gemini\nsession:\n  default_tags: [from-file]\n")
    shown = cli.json("config", "show", "--json", "--config", str(path))
    values = {row["key"]: row for row in shown["values"]}
    assert values["default_backend"]["value"] == "gemini"
    assert values["default_backend"]["source"].startswith("file")
    proc = cli("--dry-run", "hello", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Would execute: {FAKE_BIN / 'gemini'} "), proc.stdout
    cli("-b", "claude", "hi FAKE{}", "--config", str(path))
    listed = cli.json("sessions", "list", "--json", "--config", str(path))["sessions"]
    assert listed and listed[0]["tags"] == ["from-file"]
    proc = cli("sessions", "list", f"--config={path}")
    assert proc.returncode == 0, proc.stderr


def test_parallel_with_the_config_after_the_task_file(cli: Cli) -> None:
    path = _config(cli, "unified_flags:\n  dry_run: true\n")
    tasks = cli.tmp / "tasks.json"
    tasks.write_text(json.dumps({"tasks": [{"backend": "codex", "prompt": "one"},
                                           {"backend": "claude", "prompt": "two"}]}))
    proc = cli("parallel", "-f", str(tasks), "--json", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    outputs = [r["output"] for r in json.loads(proc.stdout)["results"]]
    assert all(o.startswith("Would execute: ") for o in outputs), outputs
    assert cli.runs() == []  # the file's dry_run applied: nothing ran



def test_serve_reads_a_config_given_after_it(cli: Cli) -> None:
    port = free_port()
    path = _config(cli, f"server:\n  port: {port}\n  response_envelope: false\n"
                        "  rate_limit_enabled: true\n  max_request_body_bytes: 4096\n")
    proc = cli.popen("serve", "--config", str(path))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/api/v1/backends", timeout=2)
                break
            except (requests.ConnectionError, requests.ReadTimeout):  # worker still booting
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert "success" not in resp.json()  # response_envelope: false from the file
        big = requests.post(f"http://127.0.0.1:{port}/api/v1/prompt", timeout=5,
                            data=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert big.status_code == 413  # max_request_body_bytes from the file
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_help_describes_config(cli: Cli) -> None:
    proc = cli("serve", "--help")
    assert proc.returncode == 0
    assert "--config FILE" in proc.stdout and "may also follow the command" in proc.stdout


def test_dry_run_wording_for_resume_and_task_files(cli: Cli) -> None:
    sid = cli.json("-o", "json", "-b", "codex", "first FAKE{}")["session_id"]
    proc = cli("resume", "--dry-run", sid, "next")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Would execute: {FAKE_BIN / 'codex'} exec"), proc.stdout
    assert "resume" in proc.stdout
    steps = cli.tmp / "chain.json"
    steps.write_text(json.dumps({"steps": [{"backend": "gemini", "prompt": "a"}]}))
    proc = cli("chain", "-f", str(steps), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["results"][0]["output"].startswith(f"Would execute: {FAKE_BIN / 'gemini'}")


@pytest.mark.parametrize(("args", "words"), [
    (("-b", "nosuch", "hi"), "'nosuch' is not one of 'claude', 'codex', 'gemini'"),
    (("-o", "yaml", "hi"), "'yaml' is not one of"),
    (("--approval-mode", "sometimes", "hi"), "'sometimes' is not one of"),
    (("sessions", "list", "--status", "weird"), "'weird' is not one of"),
    (("sessions", "list", "--limit", "zero"), "'zero' is not a valid integer"),
    (("serve", "--port", "99999"), "99999"),
    (("sessions", "list", "--bogus"), "No such option"),
])
def test_usage_errors_are_one_true_line(cli: Cli, args: tuple[str, ...], words: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("clinvk: error: ") and words in lines[0], lines[0]
    assert "Usage:" not in proc.stderr and "clinvk run" not in proc.stderr
    assert proc.stdout == ""


def test_a_usage_error_names_the_help_of_its_command(cli: Cli) -> None:
    proc = cli("sessions", "list", "--bogus")
    assert "(see 'clinvk sessions list --help')" in proc.stderr
    proc = cli("-b", "nosuch", "hi")
    assert "(see 'clinvk --help')" in proc.stderr


def test_version_still_works_in_any_position(cli: Cli) -> None:
    assert subprocess.run is not None
    proc = cli("--version")
    assert proc.returncode == 0 and "clinvk" in proc.stdout
