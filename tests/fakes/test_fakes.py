"""The fake CLIs in tests/fakes/bin against the recorded real-CLI fixtures.

Every fixture case that the fakes can reproduce is replayed in recording order (so session ids
learned from earlier cases feed the resume cases), with ``FAKE_CLI_STDERR_NOISE=1`` so stderr can
be compared too. Outputs are compared after normalising ids, timestamps, paths, ports and
numbers; everything else (keys, event order, texts, exit codes) must match exactly.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
BIN = TESTS / "fakes" / "bin"
FIXTURES = TESTS / "fixtures" / "real_cli"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Cases the fakes cannot replay: they depend on stub-server behaviour that has no knob
# (connection refused, a denying tool command, the gemini router failing).
SKIPPED = {
    "claude_noserver_json",
    "claude_tool_denied_json",
    "claude_tool_denied_stream-json",
    "codex_noserver_json",
    "gemini_noserver_json",
    "gemini_err500_all_json",
}
if not IS_ROOT:
    SKIPPED.add("claude_tool_skipperms_root_json")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
EXACT_NUMBERS = {
    "num_turns",
    "attempt",
    "max_retries",
    "error_status",
    "api_error_status",
    "exit_code",
    "index",
    "contextWindow",
    "maxOutputTokens",
    "code",
    "totalRequests",
    "totalErrors",
    "tool_calls",
    "totalCalls",
    "totalSuccess",
    "totalFail",
    "count",
    "success",
    "fail",
    "accept",
    "reject",
    "modify",
    "auto_accept",
    "cached",
    "thoughts",
    "tool",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_output_tokens",
    "web_search_requests",
    "web_fetch_requests",
    "totalLinesAdded",
    "totalLinesRemoved",
}


# --------------------------------------------------------------------------------------------
# helpers


_PYTHON_DIR: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def fast_python(tmp_path_factory):
    """A PATH entry whose python3 runs this interpreter with -S, so `#!/usr/bin/env python3`
    skips version-manager shims and site-packages .pth hooks (together ~100 ms per fake start;
    the fakes only need the standard library)."""
    d = tmp_path_factory.mktemp("python")
    wrapper = d / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
    wrapper.chmod(0o755)
    _PYTHON_DIR[:] = [str(d)]
    yield
    _PYTHON_DIR.clear()


def base_env(home: Path, state: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKE_CLI_", "CLAUDE_", "CODEX_", "GEMINI_", "GOOGLE_", "IS_SANDBOX"))
        and not k.startswith(("ANTHROPIC_", "OPENAI_"))
    }
    env.update(
        HOME=str(home),
        FAKE_CLI_STATE_DIR=str(state),
        PATH=os.pathsep.join((*_PYTHON_DIR, str(BIN), os.environ.get("PATH", ""))),
        ANTHROPIC_BASE_URL="http://127.0.0.1:1234",
        ANTHROPIC_API_KEY="sk-ant-test",
        STUB_OPENAI_KEY="sk-stub-test",
        OPENAI_API_KEY="sk-stub-test",
        GOOGLE_GEMINI_BASE_URL="http://127.0.0.1:1234",
        GEMINI_API_KEY="test",
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    return env


def make_home(home: Path, selected_type: bool = True) -> None:
    """A HOME set up like the recording machine: codex provider config, gemini settings."""
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "gpt-5.5"\nmodel_provider = "stub"\n[model_providers.stub]\nname = "Stub"\n'
        'base_url = "http://127.0.0.1:1234/v1"\nenv_key = "STUB_OPENAI_KEY"\n'
        'wire_api = "responses"\n'
    )
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"maxAttempts": 2},
    }
    if selected_type:
        settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))


def run(argv: list[str], env: dict, cwd: Path, stdin: str | None = "", timeout: float = 15):
    """Run a fake; empty stdin is /dev/null, as in the recordings (no timing involved)."""
    exe = [str(BIN / argv[0]), *argv[1:]]
    return subprocess.run(
        exe,
        input=stdin.encode() if stdin else None,
        stdin=None if stdin else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        start_new_session=True,
    )


def text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def parse_jsonl(s: str) -> list:
    return [json.loads(line) for line in s.splitlines() if line.strip()]


def sanitize_cwd(p: Path) -> str:
    return re.sub(r"[^a-zA-Z0-9]", "-", str(p))


class Norm:
    """Normalise a fixture or fake output for comparison."""

    def __init__(self, cwd: Path | None = None, home: Path | None = None) -> None:
        self.subs: list[tuple[str, str]] = []
        if cwd is not None:
            self.subs += [(str(cwd), "/srv/work"), (sanitize_cwd(cwd), "-srv-work")]
        if home is not None:
            self.subs.append((str(home), "/home/user"))

    def s(self, v: str) -> str:
        for a, b in self.subs:
            v = v.replace(a, b)
        v = re.sub(UUID, "<uuid>", v)
        v = re.sub(r"\d{4}-\d\d-\d\dT\d\d[:-]\d\d[:-]\d\d[.-]\d{3}Z", "<ts>", v)
        v = re.sub(r"msg_stub_[0-9a-f]{20}", "<msg>", v)
        v = re.sub(r"toolu_stub_[0-9a-f]{16}", "<tool>", v)
        v = re.sub(r"req_stub_[0-9a-f]{12}", "<req>", v)
        v = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", v)
        v = re.sub(r"Chunk ID: [0-9a-f]{6}", "Chunk ID: <id>", v)
        v = re.sub(r"PGID: \d+", "PGID: <n>", v)
        v = re.sub(r"_\d{13}_0", "_<ms>_0", v)
        v = re.sub(r"(tokens used\n)[\d,]+", r"\1<n>", v)
        return v

    def obj(self, v, key: str | None = None):
        if isinstance(v, dict):  # a list of pairs: key order must match too
            return [(self.s(k), self.obj(x, k)) for k, x in v.items()]
        if isinstance(v, list):
            return [self.obj(x, key) for x in v]
        if isinstance(v, str):
            return self.s(v)
        if isinstance(v, bool) or v is None:
            return v
        if key in EXACT_NUMBERS:
            return v
        return f"<{type(v).__name__}>"

    def stderr(self, v: str) -> str:
        lines = [ln for ln in v.splitlines(True) if not ln.startswith("[STARTUP]")]
        return self.s("".join(lines))

    def stdout(self, v: str):
        """JSON (JSONL or one pretty object) -> normalised objects; else normalised text."""
        stripped = v.strip()
        if stripped.startswith("{") or stripped.startswith("["):
            try:
                return ("json", self.obj(json.loads(stripped)))
            except ValueError:
                return ("jsonl", [self.obj(x) for x in parse_jsonl(v)])
        return ("text", self.s(v))


# --------------------------------------------------------------------------------------------
# fixture replay


def load_case(name: str) -> dict:
    lines = (FIXTURES / f"{name}.cmd").read_text().splitlines()
    case = {
        "name": name,
        "argv": shlex.split(lines[0]),
        "stdin": "",
        "env": {},
        "unset": [],
        "stub": [],
        "stdout": (FIXTURES / f"{name}.stdout").read_text(),
        "stderr": (FIXTURES / f"{name}.stderr").read_text(),
        "rc": int((FIXTURES / f"{name}.rc").read_text().strip()),
    }
    for line in lines[1:]:
        if line.startswith("# stdin: "):
            case["stdin"] = ast.literal_eval(line[len("# stdin: ") :])
        elif line.startswith("# stub args: "):
            case["stub"] = shlex.split(line[len("# stub args: ") :])
        elif line.startswith("# extra env: "):
            for seg in line[len("# extra env: ") :].split(";"):
                words = shlex.split(seg)
                if words[:1] == ["export"]:
                    case["env"].update(w.split("=", 1) for w in words[1:] if "=" in w)
                elif words[:1] == ["unset"]:
                    case["unset"].extend(words[1:])
    return case


def all_cases() -> list[str]:
    index = (FIXTURES / "INDEX.md").read_text()
    return re.findall(r"^\| ((?:claude|codex|gemini)_[^ |]+) \|", index, re.M)


CASES = all_cases()


def replay_cli(cli: str, root: Path) -> dict:
    """Replay one CLI's fixture cases in recording order; return {case: result}."""
    base = root / cli
    home, state, cwd, other = base / "home", base / "state", base / "work", base / "other"
    for d in (home, state, cwd, other):
        d.mkdir(parents=True)
    make_home(home)
    ids: dict[str, str] = {}  # recorded session id -> fake session id
    results = {}
    for name in CASES:
        if not name.startswith(cli + "_") or name in SKIPPED:
            continue
        case = load_case(name)
        env = base_env(home, state)
        env["FAKE_CLI_STDERR_NOISE"] = "1"
        env.update(case["env"])
        for k in case["unset"]:
            env.pop(k, None)
        stub = case["stub"]
        if "--fail-first" in stub:
            # transient failures that recover; codex retries those silently (request level)
            if cli != "codex":
                env["FAKE_CLI_RETRIES"] = stub[stub.index("--fail-first") + 1]
        elif "--error-status" in stub:
            env["FAKE_CLI_ERROR"] = stub[stub.index("--error-status") + 1]
        argv = [ids.get(a, a) for a in case["argv"]]
        if any("RUN_TOOL" in a for a in argv):
            env["FAKE_CLI_TOOL"] = "1"
        argv = [
            a.replace("/srv/work", str(cwd)).replace("/srv/other", str(base / "last.txt"))
            for a in argv
        ]
        run_cwd = other if name == "claude_resume_other-cwd_json" else cwd
        if name.startswith("gemini_gateway-auth-bug"):
            make_home(home, selected_type=False)
        proc = run(argv, env, run_cwd, stdin=case["stdin"])
        if name.startswith("gemini_gateway-auth-bug"):
            make_home(home)
        out, err = text(proc.stdout), text(proc.stderr)
        # learn recorded -> fake session ids
        pat = r'(?:"session_id"|"thread_id"): ?"(' + UUID + r')"|session id: (' + UUID + ")"
        rec = [a or b for a, b in re.findall(pat, case["stdout"] + case["stderr"])]
        got = [a or b for a, b in re.findall(pat, out + err)]
        for r, g in zip(rec, got, strict=False):
            ids.setdefault(r, g)
        results[name] = {
            "case": case,
            "proc": proc,
            "out": out,
            "err": err,
            "cwd": run_cwd,
            "home": home,
            "root": base,
        }
    return results


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    with ThreadPoolExecutor(3) as pool:
        parts = list(pool.map(lambda c: replay_cli(c, root), ("claude", "codex", "gemini")))
    merged = {}
    for p in parts:
        merged.update(p)
    return merged


def assert_json_bytes(out: str) -> None:
    """JSON is laid out like the real CLIs: compact one-object lines (JSON.stringify /
    serde_json), or gemini's 2-space pretty print; non-ASCII is not escaped. The recorded
    fixtures all satisfy this exactly."""
    if out.startswith("{\n"):
        assert out == json.dumps(json.loads(out), indent=2, ensure_ascii=False)
        return
    for line in out.splitlines():
        if line.startswith(("{", "[")):
            compact = json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))
            assert line == compact


@pytest.mark.parametrize("name", [c for c in CASES if c not in SKIPPED])
def test_fixture_replay(replayed, name):
    r = replayed[name]
    case, proc = r["case"], r["proc"]
    assert proc.returncode == case["rc"], r["err"]
    fake, real = Norm(r["cwd"], r["home"]), Norm()
    if name == "gemini_list-sessions":
        assert len(r["out"].splitlines()) == len(case["stdout"].splitlines())
        title = r"\d+\. .* (\(Just now\)|\(\d+ \w+ ago\))"
        assert re.sub(title, r"\1", fake.s(r["out"])) == re.sub(
            title, r"\1", real.s(case["stdout"])
        )
        return
    assert fake.stdout(r["out"]) == real.stdout(case["stdout"])
    assert fake.stderr(r["err"]) == real.stderr(case["stderr"])
    assert_json_bytes(r["out"])
    if name.startswith("gemini_") and case["stdout"].startswith("{\n"):
        assert not r["out"].endswith("\n")  # gemini prints its pretty JSON without a newline
    if name == "codex_flags_json":
        assert (r["root"] / "last.txt").read_text() == "Hello from stub (turn 1)"


def test_replay_covers_every_mode(replayed):
    names = set(replayed)
    for needed in (
        "claude_text",
        "claude_json",
        "claude_stream-json",
        "claude_stream-json_partial",
        "codex_text",
        "codex_json",
        "gemini_text",
        "gemini_json",
        "gemini_stream-json",
        "claude_resume_stream-json",
        "codex_resume_last_json",
        "gemini_resume_latest_json",
    ):
        assert needed in names


# --------------------------------------------------------------------------------------------
# per-test sandbox and process hygiene


@pytest.fixture
def sb(tmp_path):
    """A sandbox: HOME, state dir, work dir, env; kills every process group it started."""

    class Sandbox:
        def __init__(self) -> None:
            self.home = tmp_path / "home"
            self.cwd = tmp_path / "work"
            self.state = tmp_path / "state"
            for d in (self.home, self.cwd):
                d.mkdir()
            make_home(self.home)
            self.env = base_env(self.home, self.state)
            self.procs: list[subprocess.Popen] = []
            self.pgids: list[int] = []

        def run(self, argv, stdin: str | None = "", cwd=None, **env):
            e = dict(self.env, **{k: str(v) for k, v in env.items()})
            return run(argv, e, cwd or self.cwd, stdin=stdin)

        def popen(self, argv, **env) -> subprocess.Popen:
            e = dict(self.env, **{k: str(v) for k, v in env.items()})
            p = subprocess.Popen(
                [str(BIN / argv[0]), *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=e,
                cwd=self.cwd,
                start_new_session=True,
            )
            self.procs.append(p)
            self.pgids.append(p.pid)
            return p

    box = Sandbox()
    yield box
    for pgid in box.pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in box.procs:
        p.wait(timeout=5)
        for f in (p.stdout, p.stderr):
            if f:
                f.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def timed_lines(p: subprocess.Popen, n: int | None = None) -> list[tuple[float, str]]:
    lines = []
    for raw in p.stdout:
        lines.append((time.monotonic(), raw.decode()))
        if n is not None and len(lines) >= n:
            break
    return lines


# --------------------------------------------------------------------------------------------
# versions and argv acceptance / rejection


def test_versions(sb):
    assert text(sb.run(["claude", "--version"]).stdout) == "2.1.197 (Claude Code)\n"
    assert text(sb.run(["codex", "--version"]).stdout) == "codex-cli 0.171.0\n"
    assert text(sb.run(["gemini", "--version"]).stdout) == "0.61.0\n"


def test_claude_rejections(sb):
    p = sb.run(["claude", "-p", "hi", "--bogus"])
    assert (p.returncode, text(p.stdout), text(p.stderr)) == (
        1,
        "",
        "error: unknown option '--bogus'\n",
    )
    p = sb.run(["claude", "-p", "hi", "--verbos"])
    assert text(p.stderr) == "error: unknown option '--verbos'\n(Did you mean --verbose?)\n"
    p = sb.run(["claude", "-p", "hi", "--output-format", "xml"])
    assert p.returncode == 1
    assert text(p.stderr) == (
        "error: option '--output-format <format>' argument 'xml' is invalid. "
        "Allowed choices are text, json, stream-json.\n"
    )
    p = sb.run(["claude", "-p", "hi", "--model"])
    assert text(p.stderr) == "error: option '--model <model>' argument missing\n"
    p = sb.run(["claude", "-p", "hi", "--session-id", "nope"])
    assert (p.returncode, text(p.stderr)) == (
        1,
        "Error: Invalid session ID. Must be a valid UUID.\n",
    )
    # --allowedTools is variadic: it swallows the following prompt, leaving none
    p = sb.run(["claude", "-p", "--allowedTools", "Read", "say hi"])
    assert p.returncode == 1 and "Input must be provided" in text(p.stderr)
    p = sb.run(["claude", "-p", "--allowedTools", "Read", "Bash(echo *)", "--", "say hi"])
    assert (p.returncode, text(p.stdout)) == (0, "Hello from stub (turn 1)\n")
    p = sb.run(["claude", "-p", "--allowedTools=Read", "say hi"])
    assert (p.returncode, text(p.stdout)) == (0, "Hello from stub (turn 1)\n")
    # options that the help text hides or lists are accepted
    p = sb.run(
        [
            "claude",
            "-p",
            "--max-turns",
            "3",
            "--add-dir",
            "/tmp",
            "/var",
            "--effort",
            "low",
            "--settings",
            "{}",
            "--mcp-config",
            "{}",
            "--fallback-model",
            "sonnet",
            "--no-session-persistence",
            "--max-budget-usd",
            "1",
            "--disallowedTools",
            "Write",
            "--permission-mode",
            "plan",
            "--",
            "-x looks like an option",
        ]
    )
    assert (p.returncode, text(p.stdout)) == (0, "Hello from stub (turn 1)\n")


def test_claude_skip_permissions_needs_sandbox_as_root(sb):
    p = sb.run(["claude", "-p", "hi", "--dangerously-skip-permissions"])
    if IS_ROOT:
        assert p.returncode == 1
        assert "cannot be used with root/sudo privileges" in text(p.stderr)
    p = sb.run(["claude", "-p", "hi", "--dangerously-skip-permissions"], IS_SANDBOX=1)
    assert p.returncode == 0


def test_codex_rejections(sb):
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "--full-auto", "hi"])
    assert p.returncode == 2
    assert text(p.stderr) == (
        "error: unexpected argument '--full-auto' found\n\n"
        "  tip: to pass '--full-auto' as a value, use '-- --full-auto'\n\n"
        "Usage: codex exec [OPTIONS] [PROMPT]\n"
        "       codex exec [OPTIONS] <COMMAND> [ARGS]\n\n"
        "For more information, try '--help'.\n"
    )
    p = sb.run(["codex", "exec", "-a", "never", "hi"])
    assert p.returncode == 2 and "unexpected argument '-a' found" in text(p.stderr)
    for flag in (["-C", "."], ["-s", "read-only"], ["--cd", "."], ["--sandbox", "read-only"]):
        p = sb.run(["codex", "exec", "resume", "--last", *flag, "hi"])
        assert p.returncode == 2, flag
        assert f"unexpected argument '{flag[0]}' found" in text(p.stderr)
        assert "Usage: codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]" in text(p.stderr)
    p = sb.run(["codex", "exec", "-s", "yolo", "hi"])
    assert p.returncode == 2
    assert text(p.stderr).startswith("error: invalid value 'yolo' for '--sandbox <SANDBOX_MODE>'\n")
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "one", "two"])
    assert p.returncode == 2 and "unexpected argument 'two' found" in text(p.stderr)
    p = sb.run(["codex", "exec", "--json", "hi"])  # the work dir is not a git repo
    assert p.returncode == 1
    assert text(p.stderr).endswith(
        "Not inside a trusted directory and --skip-git-repo-check was not specified.\n"
    )
    (sb.cwd / ".git").mkdir()
    assert sb.run(["codex", "exec", "--json", "hi"]).returncode == 0


def test_codex_accepts_its_flags(sb, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    out_file = tmp_path / "last.txt"
    p = sb.run(
        [
            "codex",
            "-c",
            "x=1",
            "exec",
            "--skip-git-repo-check",
            "--json",
            "-m",
            "gpt-5.5",
            "-s",
            "danger-full-access",
            "-C",
            str(sb.cwd),
            "--add-dir",
            "/tmp",
            "-c",
            'model_reasoning_effort="high"',
            "--enable",
            "foo",
            "--disable",
            "bar",
            "--color",
            "never",
            "--output-schema",
            str(schema),
            "--ignore-user-config",
            "-o",
            str(out_file),
            "-i",
            str(schema),
            "--",
            "-",
        ],
        stdin="from stdin",
    )
    assert p.returncode == 0, text(p.stderr)
    assert out_file.read_text() == "Hello from stub (turn 1)"
    sid = parse_jsonl(text(p.stdout))[0]["thread_id"]
    p = sb.run(
        [
            "codex",
            "exec",
            "resume",
            "--skip-git-repo-check",
            "--json",
            "-m",
            "gpt-5.5",
            "--ephemeral",
            "-o",
            str(out_file),
            "-c",
            "a=b",
            "--dangerously-bypass-approvals-and-sandbox",
            sid,
            "-",
        ],
        stdin="again",
    )
    assert p.returncode == 0, text(p.stderr)
    assert parse_jsonl(text(p.stdout))[2]["item"]["text"] == "Hello from stub (turn 2)"


def test_codex_prompt_from_stdin(sb):
    p = sb.run(["codex", "exec", "--skip-git-repo-check"], stdin="")
    assert (p.returncode, text(p.stderr)) == (
        1,
        "Reading prompt from stdin...\nNo prompt provided via stdin.\n",
    )
    p = sb.run(["codex", "exec", "--skip-git-repo-check"], stdin="hello there")
    assert p.returncode == 0 and "user\nhello there\n" in text(p.stderr)
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "main"], stdin="piped")
    assert "user\nmain\n\n<stdin>\npiped\n</stdin>\n" in text(p.stderr)


def test_gemini_rejections(sb):
    help_text = (TESTS / "fakes" / "help" / "gemini_help.txt").read_text()
    p = sb.run(["gemini", "-p", "hi", "--bogus"])
    assert (p.returncode, text(p.stderr)) == (1, "Unknown argument: bogus\n" + help_text)
    p = sb.run(["gemini", "-p", "hi", "-o", "xml"])
    assert p.returncode == 1 and text(p.stderr).startswith(
        'Invalid values:\n  Argument: output-format, Given: "xml", Choices: "text", "json", '
        '"stream-json"\n'
    )
    p = sb.run(["gemini", "-p", "hi", "positional"])
    assert text(p.stderr).startswith(
        "Cannot use both a positional prompt and the --prompt (-p) flag together\n"
    )
    p = sb.run(["gemini", "-p", "hi", "-y", "--approval-mode", "plan"])
    assert p.returncode == 1 and "Cannot use both --yolo (-y) and --approval-mode" in text(p.stderr)
    # a positional prompt runs headless too; --include-directories is greedy like yargs arrays
    p = sb.run(["gemini", "--skip-trust", "-m", "gemini-2.5-pro", "say", "hi"])
    assert (p.returncode, text(p.stdout)) == (0, "Hello from stub (turn 1)\n")
    p = sb.run(["gemini", "--include-directories", "/tmp", "say hi"], stdin="")
    assert p.returncode == 42 and "No input provided via stdin" in text(p.stderr)
    env = {k: v for k, v in sb.env.items() if k != "GEMINI_CLI_TRUST_WORKSPACE"}
    p = run(["gemini", "-p", "hi"], env, sb.cwd)
    assert p.returncode == 55
    p = run(["gemini", "-p", "hi", "--skip-trust", "--raw-output", "-d", "-s"], env, sb.cwd)
    assert p.returncode == 0


def test_gemini_stdin_is_prepended_to_prompt(sb):
    p = sb.run(["gemini", "-p", "question", "-o", "stream-json"], stdin="context")
    user = parse_jsonl(text(p.stdout))[1]
    assert user["role"] == "user" and user["content"] == "context\n\nquestion"


# --------------------------------------------------------------------------------------------
# sessions


def reply_of(cli: str, p) -> str:
    out = text(p.stdout)
    if cli == "claude":
        return json.loads(out)["result"]
    if cli == "codex":
        return [e for e in parse_jsonl(out) if e["type"] == "item.completed"][-1]["item"]["text"]
    return json.loads(out)["response"]


def sid_of(cli: str, p) -> str:
    out = text(p.stdout)
    if cli == "codex":
        return parse_jsonl(out)[0]["thread_id"]
    return json.loads(out)["session_id"]


NEW = {
    "claude": ["claude", "-p", "--output-format", "json"],
    "codex": ["codex", "exec", "--skip-git-repo-check", "--json", "-"],
    "gemini": ["gemini", "-o", "json"],
}


def resume_argv(cli: str, sid: str) -> list[str]:
    return {
        "claude": ["claude", "-p", "--output-format", "json", "--resume", sid],
        "codex": ["codex", "exec", "resume", "--skip-git-repo-check", "--json", sid, "-"],
        "gemini": ["gemini", "-o", "json", "--resume", sid],
    }[cli]


def latest_argv(cli: str) -> list[str]:
    return {
        "claude": ["claude", "-p", "--output-format", "json", "--continue"],
        "codex": ["codex", "exec", "resume", "--skip-git-repo-check", "--json", "--last", "-"],
        "gemini": ["gemini", "-o", "json", "--resume", "latest"],
    }[cli]


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_resume_counts_turns(sb, cli):
    first = sb.run(NEW[cli], stdin="one")
    assert first.returncode == 0, text(first.stderr)
    sid = sid_of(cli, first)
    other = sb.run(NEW[cli], stdin="unrelated")
    assert reply_of(cli, other) == "Hello from stub (turn 1)"
    second = sb.run(resume_argv(cli, sid), stdin="two")
    assert (sid_of(cli, second), reply_of(cli, second)) == (sid, "Hello from stub (turn 2)")
    third = sb.run(resume_argv(cli, sid), stdin="three")
    assert reply_of(cli, third) == "Hello from stub (turn 3)"
    latest = sb.run(latest_argv(cli), stdin="four")  # newest session of this cwd
    assert (sid_of(cli, latest), reply_of(cli, latest)) == (sid, "Hello from stub (turn 4)")
    state = json.loads((sb.state / cli / f"{sid}.json").read_text())
    assert state["backend"] == cli and state["cwd"] == str(sb.cwd)
    assert [t["prompt"] for t in state["turns"]] == ["one", "two", "three", "four"]


def test_unknown_session_errors(sb):
    bad = "00000000-0000-4000-8000-000000000000"
    p = sb.run(resume_argv("claude", bad), stdin="x")
    assert (p.returncode, text(p.stdout), text(p.stderr)) == (
        1,
        "",
        f"No conversation found with session ID: {bad}\n",
    )
    p = sb.run(resume_argv("codex", bad), stdin="x")
    assert (p.returncode, text(p.stderr)) == (
        1,
        f"Error: thread/resume: thread/resume failed: no rollout found for thread id {bad} "
        "(code -32600)\n",
    )
    p = sb.run(resume_argv("gemini", bad), stdin="x")
    assert p.returncode == 42
    assert text(p.stderr).startswith(f'Error resuming session: Invalid session identifier "{bad}".')


def test_claude_resume_is_scoped_to_cwd_and_fork(sb, tmp_path):
    sid = sid_of("claude", sb.run(NEW["claude"], stdin="one"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = sb.run(resume_argv("claude", sid), stdin="x", cwd=elsewhere)
    assert p.returncode == 1 and "No conversation found" in text(p.stderr)
    p = sb.run(resume_argv("claude", sid) + ["--fork-session"], stdin="fork")
    assert sid_of("claude", p) != sid and reply_of("claude", p) == "Hello from stub (turn 2)"
    fixed = "11111111-2222-4333-8444-555555555555"
    p = sb.run(NEW["claude"] + ["--session-id", fixed], stdin="x")
    assert sid_of("claude", p) == fixed
    p = sb.run(NEW["claude"] + ["--session-id", fixed], stdin="x")
    assert text(p.stderr) == f"Error: Session ID {fixed} is already in use.\n"


def test_no_persistence_and_ephemeral_write_nothing(sb):
    p = sb.run(NEW["claude"] + ["--no-session-persistence"], stdin="x")
    assert p.returncode == 0
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "--ephemeral", "--json", "x"])
    assert p.returncode == 0
    assert not (sb.state / "claude").exists() and not (sb.state / "codex").exists()
    sid = parse_jsonl(text(p.stdout))[0]["thread_id"]
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab]", sid)  # UUID v7


# --------------------------------------------------------------------------------------------
# knobs


def test_reply_knob_env_and_directive(sb):
    p = sb.run(["claude", "-p", "hi"], FAKE_CLI_REPLY="env says {turn}")
    assert text(p.stdout) == "env says 1\n"
    p = sb.run(["claude", "-p", 'hi FAKE{"reply": "directive {turn}"}'], FAKE_CLI_REPLY="env says")
    assert text(p.stdout) == "directive 1\n"


def test_delay_chunk_delay_and_pause(sb):
    t = time.monotonic()
    p = sb.run(["gemini", "-p", 'FAKE{"delay": 0.3}'])
    assert p.returncode == 0 and time.monotonic() - t >= 0.3
    proc = sb.popen(
        ["gemini", "-p", 'FAKE{"pause_after_first": 0.4, "chunk_delay": 0.05}', "-o", "stream-json"]
    )
    lines = timed_lines(proc)
    proc.wait(5)
    deltas = [(t, json.loads(s)) for t, s in lines if '"delta":true' in s]
    assert [d["content"] for _, d in deltas] == ["Hello ", "from ", "stub ", "(turn ", "1)"]
    assert deltas[1][0] - deltas[0][0] >= 0.35
    assert deltas[4][0] - deltas[1][0] >= 0.12  # three chunk delays


def test_wait_for_holds_the_run_until_the_gate_file_exists(sb, tmp_path):
    gate = tmp_path / "gate"
    proc = sb.popen(["claude", "-p", "hi FAKE" + json.dumps({"wait_for": str(gate)})])
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.5)  # held: no output, still running
    gate.touch()
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and text(out) == "Hello from stub (turn 1)\n"


def test_error_exit_codes(sb):
    cases = [
        (["claude", "-p", "hi", "--output-format", "json"], 1),
        (["codex", "exec", "--skip-git-repo-check", "--json", "hi"], 1),
        (["gemini", "-p", "hi", "-o", "json"], 145),
        (["gemini", "-p", "hi", "-o", "text"], 1),
    ]
    for argv, rc in cases:
        assert sb.run(argv, FAKE_CLI_ERROR=401).returncode == rc, argv
    assert sb.run(["gemini", "-p", "hi", "-o", "stream-json"], FAKE_CLI_ERROR=429).returncode == 173
    p = sb.run(
        ["claude", "-p", "hi", "--output-format", "stream-json", "--verbose"],
        FAKE_CLI_ERROR=500,
        CLAUDE_CODE_MAX_RETRIES=3,
    )
    events = parse_jsonl(text(p.stdout))
    subtypes = [e.get("subtype") for e in events if e["type"] == "system"]
    assert subtypes == ["init", "api_retry", "api_retry", "api_retry"]
    assert events[-1]["is_error"] is True and events[-1]["api_error_status"] == 500
    # transient failures that recover: codex reports them as "Reconnecting" error events
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "--json", "hi"], FAKE_CLI_RETRIES=2)
    events = parse_jsonl(text(p.stdout))
    assert p.returncode == 0
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "error",
        "error",
        "item.completed",
        "turn.completed",
    ]
    assert events[3]["message"].startswith("Reconnecting... 2/5 (")


def test_exit_code_silent_garbage_big_line(sb):
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "--json", "hi"], FAKE_CLI_EXIT_CODE=3)
    assert p.returncode == 3 and parse_jsonl(text(p.stdout))[-1]["type"] == "turn.completed"
    p = sb.run(["claude", "-p", "hi"], FAKE_CLI_SILENT=1)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
    p = sb.run(
        ["claude", "-p", "hi", "--output-format", "stream-json", "--verbose"], FAKE_CLI_GARBAGE=1
    )
    lines = text(p.stdout).splitlines()
    bad = [ln for ln in lines if not ln.startswith("{")]
    assert len(bad) >= 2 and all("not JSON" in ln for ln in bad)
    assert json.loads(lines[-1])["type"] == "result"
    p = sb.run(["claude", "-p", "hi"], FAKE_CLI_BIG_LINE=300000)
    assert p.stdout == b"x" * 300000 + b"\n"
    p = sb.run(["gemini", "-p", "hi", "-o", "stream-json"], FAKE_CLI_BIG_LINE=100000)
    assert max(len(ln) for ln in p.stdout.splitlines()) > 100000


def test_die_midstream(sb):
    p = sb.run(
        [
            "claude",
            "-p",
            "hi",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
        ],
        FAKE_CLI_DIE_MIDSTREAM=1,
    )
    events = parse_jsonl(text(p.stdout))
    assert p.returncode == 1
    assert events[-1]["event"]["delta"]["text"] == "Hello "
    assert not any(e["type"] == "result" for e in events)
    p = sb.run(["gemini", "-p", "hi"], FAKE_CLI_DIE_MIDSTREAM=1)
    assert (p.returncode, text(p.stdout)) == (1, "Hello ")


def test_hang_and_ignore_sigterm(sb):
    proc = sb.popen(
        ["codex", "exec", "--skip-git-repo-check", "--json", "hi"],
        FAKE_CLI_HANG=1,
        FAKE_CLI_IGNORE_SIGTERM=1,
    )
    first = proc.stdout.readline()
    assert json.loads(first)["type"] == "thread.started"
    time.sleep(0.3)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # SIGTERM ignored
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL
    proc = sb.popen(["claude", "-p", "hi"], FAKE_CLI_HANG=1)
    time.sleep(0.3)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == -signal.SIGTERM


def test_grandchild_and_pidfile(sb, tmp_path):
    pidfile = tmp_path / "pids"
    proc = sb.popen(["claude", "-p", "hi"], FAKE_CLI_GRANDCHILD=1, FAKE_CLI_PIDFILE=pidfile)
    out, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0 and out == b"Hello from stub (turn 1)\n"
    own, grandchild = (int(x) for x in pidfile.read_text().split())
    assert own == proc.pid and alive(grandchild)
    assert os.getpgid(grandchild) == proc.pid  # same process group as the fake
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    assert alive(grandchild)  # ignores SIGTERM
    os.killpg(proc.pid, signal.SIGKILL)
    assert wait_gone(grandchild)


def test_tool_and_reasoning(sb):
    p = sb.run(
        ["codex", "exec", "--skip-git-repo-check", "--json", "hi"],
        FAKE_CLI_TOOL=1,
        FAKE_CLI_REASONING=1,
    )
    items = [e["item"] for e in parse_jsonl(text(p.stdout)) if e["type"] == "item.completed"]
    assert [i["type"] for i in items] == ["reasoning", "command_execution", "agent_message"]
    assert items[1]["aggregated_output"] == "hello-from-tool\n"
    p = sb.run(
        ["claude", "-p", "hi", "--output-format", "stream-json", "--verbose"],
        FAKE_CLI_TOOL=1,
        FAKE_CLI_REASONING=1,
    )
    blocks = [
        e["message"]["content"][0]["type"]
        for e in parse_jsonl(text(p.stdout))
        if e["type"] in ("assistant", "user")
    ]
    assert blocks == ["thinking", "text", "tool_use", "tool_result", "text"]
    p = sb.run(
        ["claude", "-p", "hi", "--output-format", "json", "--max-turns", "1"], FAKE_CLI_TOOL=1
    )
    result = json.loads(text(p.stdout))
    assert (p.returncode, result["subtype"], result["terminal_reason"]) == (
        1,
        "error_max_turns",
        "max_turns",
    )


def test_stderr_noise_off_by_default(sb):
    p = sb.run(["codex", "exec", "--skip-git-repo-check", "--json", "hi"])
    assert text(p.stderr) == "Reading additional input from stdin...\n"
    p = sb.run(["gemini", "-p", "hi"])
    assert p.stderr == b""
    p = sb.run(["gemini", "-p", "hi"], FAKE_CLI_STDERR_NOISE=1)
    assert text(p.stderr).endswith("Ripgrep is not available. Falling back to GrepTool.\n")


def test_claude_verbose_json_is_an_array(sb):
    p = sb.run(["claude", "-p", "hi", "--output-format", "json", "--verbose"])
    events = json.loads(text(p.stdout))
    assert [e["type"] for e in events] == ["system", "assistant", "result"]


def test_run_log(sb, tmp_path):
    log = tmp_path / "runs.jsonl"
    sb.run(
        ["claude", "-p", "--output-format", "json"],
        stdin="on stdin",
        FAKE_CLI_LOG=log,
        CLINVK_X="1",
        IS_SANDBOX="1",
    )
    sb.run(["codex", "exec", "--bogus"], FAKE_CLI_LOG=log)
    first, second = parse_jsonl(log.read_text())
    assert first["cli"] == "claude" and first["argv"] == ["-p", "--output-format", "json"]
    assert first["stdin"] == "on stdin" and first["cwd"] == str(sb.cwd)
    assert first["env"]["CLINVK_X"] == "1" and first["env"]["IS_SANDBOX"] == "1"
    assert first["env"]["ANTHROPIC_API_KEY"] == "sk-ant-test"
    assert "PATH" not in first["env"] and isinstance(first["pid"], int)
    assert second["cli"] == "codex" and second["argv"] == ["exec", "--bogus"]
    assert second["stdin"] is None
