"""Backend adapters against what the real CLIs printed and accepted (recorded fixtures)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from clinvk.core.backends.base import RunOptions
from clinvk.core.backends.registry import BACKEND_CLASSES

DATA = Path(__file__).parents[1] / "data"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "real_cli"


def parse_fixture(name: str):
    cli = name.split("_", 1)[0]
    backend = BACKEND_CLASSES[cli]()
    stdout = (FIXTURES / f"{name}.stdout").read_text()
    stderr = (FIXTURES / f"{name}.stderr").read_text()
    rc = int((FIXTURES / f"{name}.rc").read_text())
    return backend.parse_output(stdout, stderr, rc)


# name, output, backend session id prefix, error substring (None = success), input, output tokens
PARSE_CASES = [
    ("claude_json", "Hello from stub (turn 1)", "914663af", None, 3217, 6),
    ("claude_stream-json", "Hello from stub (turn 1)", "e9329c4e", None, 3217, 6),
    ("claude_stream-json_partial", "Hello from stub (turn 1)", "6aa88fd3", None, 3217, 6),
    ("claude_resume_json", "Hello from stub (turn 2)", "914663af", None, 3254, 6),
    ("claude_text", "Hello from stub (turn 1)", None, None, 0, 0),
    ("claude_tool_stream-json", "Tool said: hello-from-tool (turn 1)", "dfccece4", None, 4986, 38),
    ("claude_err401_json", "", "2bac0baf", "Invalid API key", 0, 0),
    ("claude_err401_stream-json", "", "25ec0c6d", "Invalid API key", 0, 0),
    ("claude_err500_json", "", "b06dd439", "API Error: 500", 0, 0),
    ("claude_err429_json", "", "b95f783d", "429", 0, 0),
    ("claude_err401_text", "", None, "Invalid API key", 0, 0),
    ("claude_tool_maxturns1_json", "", "8a7eb09b", "maximum number of turns", 1669, 30),
    ("claude_resume_unknown_json", "", None, "No conversation found", 0, 0),
    ("claude_stream-json_noverbose", "", None, "requires --verbose", 0, 0),
    ("codex_json", "Hello from stub (turn 1)", "01a2233e-d774", None, 6946, 6),
    ("codex_resume_json", "Hello from stub (turn 2)", "01a2233e-d774", None, 13982, 12),
    ("codex_tool_json", None, "01a2233e-e546", None, 13992, 40),
    ("codex_text", "Hello from stub (turn 1)", "01a2233e-d5fd", None, 0, 0),
    ("codex_err401_json", "", "01a2233f-0570", "401 Unauthorized", 0, 0),
    ("codex_err429_json", "", "01a2233f-e267", "429 Too Many Requests", 0, 0),
    ("codex_err500_json", "", "01a2233f-8113", "high demand", 0, 0),
    ("codex_err500_retry_then_ok_json", "Hello from stub (turn 1)", "01a2233f-e3c5", None, 6946, 6),
    ("codex_resume_unknown_json", "", None, "no rollout found", 0, 0),
    ("codex_nogit_json", "", None, "Not inside a trusted directory", 0, 0),
    ("gemini_json", "Hello from stub (turn 1)", "e04b7f97", None, 8561, 25),
    ("gemini_stream-json", "Hello from stub (turn 1)", "417d728e", None, 8561, 25),
    ("gemini_resume_uuid_stream-json", "Hello from stub (turn 3)", "e04b7f97", None, 8676, 25),
    ("gemini_tool_yolo_stream-json", None, "b7ba94d4", None, 16522, 56),
    ("gemini_text", "Hello from stub (turn 1)", None, None, 0, 0),
    ("gemini_err401_json", "", "cf899111", "API key not valid", 0, 0),
    ("gemini_err401_stream-json", "", "94c97122", "API key not valid", 739, 19),
    ("gemini_err500_stream-json", "", "6e1186d9", "Internal error", 739, 19),
    ("gemini_err429_json", "", "bec43bdb", "exhausted", 0, 0),
    ("gemini_resume_unknown_json", "", None, "Invalid session identifier", 0, 0),
    ("gemini_untrusted_json", "", None, "not running in a trusted directory", 0, 0),
]


@pytest.mark.parametrize(("name", "output", "sid", "error", "tokens_in", "tokens_out"),
                         PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_fixture_parses(name, output, sid, error, tokens_in, tokens_out):
    result = parse_fixture(name)
    if output is not None:
        assert result.output == output
    if sid is None:
        assert result.backend_session_id is None
    else:
        assert result.backend_session_id and result.backend_session_id.startswith(sid)
    if error is None:
        assert not result.is_error and result.error is None
    else:
        assert result.is_error and error in result.error
        assert "\x1b[" not in result.error
    assert result.usage.input_tokens == tokens_in
    assert result.usage.output_tokens == tokens_out


def test_every_recorded_fixture_parses_without_crashing():
    names = sorted(p.name[: -len(".stdout")] for p in FIXTURES.glob("*.stdout"))
    assert len(names) > 60
    for name in names:
        result = parse_fixture(name)
        rc = int((FIXTURES / f"{name}.rc").read_text())
        assert result.is_error == (rc != 0), name


def test_claude_usage_counts_cache_reads_as_input_and_reports_cost():
    from clinvk.core.backends.claude import claude_usage

    usage = claude_usage({"input_tokens": 10, "cache_read_input_tokens": 90,
                          "cache_creation_input_tokens": 5, "output_tokens": 7}, 0.5)
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (105, 90, 7)
    assert usage.cost_usd == 0.5


def test_codex_input_tokens_already_include_cached():
    parser = BACKEND_CLASSES["codex"]().new_stream_parser()
    parser.feed('{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":80,'
                '"output_tokens":5,"reasoning_output_tokens":3}}')
    usage = parser.finish(0).usage
    assert (usage.input_tokens, usage.cached_tokens, usage.reasoning_tokens) == (100, 80, 3)


def test_codex_reconnecting_errors_are_not_failures():
    stdout = (FIXTURES / "codex_json.stdout").read_text().replace(
        '{"type":"turn.started"}',
        '{"type":"turn.started"}\n{"type":"error","message":"Reconnecting... 1/5 (boom)"}')
    result = BACKEND_CLASSES["codex"]().parse_output(stdout, "", 0)
    assert not result.is_error and result.output == "Hello from stub (turn 1)"


def test_gemini_user_echo_is_not_assistant_text():
    parser = BACKEND_CLASSES["gemini"]().new_stream_parser()
    events = []
    for line in (FIXTURES / "gemini_stream-json.stdout").read_text().splitlines():
        events += parser.feed(line)
    texts = [e.content["text"] for e in events if e.type == "message"]
    assert "say hi" not in texts
    assert "".join(texts) == "Hello from stub (turn 1)"
    assert all(e.content["is_partial"] for e in events if e.type == "message")


def test_claude_partial_stream_gives_token_deltas_once():
    parser = BACKEND_CLASSES["claude"]().new_stream_parser()
    events = []
    for line in (FIXTURES / "claude_stream-json_partial.stdout").read_text().splitlines():
        events += parser.feed(line)
    deltas = [e.content["text"] for e in events if e.type == "message"]
    assert deltas == ["Hello ", "from ", "stub ", "(turn ", "1)"]
    assert events[0].type == "init" and events[0].content["backend_session_id"]


def test_tool_round_trips_become_tool_events():
    for name in ("claude_tool_stream-json", "codex_tool_json", "gemini_tool_yolo_stream-json"):
        backend = BACKEND_CLASSES[name.split("_")[0]]()
        parser = backend.new_stream_parser()
        events = []
        for line in (FIXTURES / f"{name}.stdout").read_text().splitlines():
            events += parser.feed(line)
        uses = [e for e in events if e.type == "tool_use"]
        results = [e for e in events if e.type == "tool_result"]
        assert uses and results, name
        assert uses[0].content["tool_id"] == results[0].content["tool_id"]
        assert "hello-from-tool" in str(results[0].content["output"])
        assert results[0].content["is_error"] is False


# -- argv -------------------------------------------------------------------------------------

def help_flags(*files: str) -> set[str]:
    text = "".join((DATA / "help" / f).read_text() for f in files)
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


HELP = {
    "claude": help_flags("claude_help.txt") | {"--max-turns"},  # hidden but accepted
    "codex": help_flags("codex_exec_help.txt"),
    "codex-resume": help_flags("codex_exec_resume_help.txt"),
    "gemini": help_flags("gemini_help.txt"),
}

FULL_OPTIONS = dict(model="best", approval_mode="auto", sandbox_mode="workspace", max_turns=3,
                    system_prompt="Be brief.", verbose=True, ephemeral=True)


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
@pytest.mark.parametrize("resume", [None, "11111111-2222-4333-8444-555555555555"])
@pytest.mark.parametrize("variant", [{}, FULL_OPTIONS, {"sandbox_mode": "read-only"},
                                     {"approval_mode": "none", "sandbox_mode": "full"}])
def test_argv_uses_only_flags_the_real_cli_accepts(name, resume, variant):
    opts = RunOptions(prompt="--help", workdir="/tmp", resume_id=resume, **variant)
    if name == "codex" and resume:
        opts.ephemeral = False
    inv = BACKEND_CLASSES[name]().build_invocation(opts)
    accepted = HELP["codex-resume" if name == "codex" and resume else name]
    flags = [a for a in inv.argv[1:] if a.startswith("-") and a != "-"]
    assert flags and all(f in accepted for f in flags), (flags, inv.argv)
    # The prompt travels on stdin, never in argv.
    assert inv.stdin.endswith("--help") and "--help" not in inv.argv
    if name == "codex" and resume:
        assert "-s" not in inv.argv and "-C" not in inv.argv


def test_argv_shapes_match_recorded_accepted_commands():
    claude = BACKEND_CLASSES["claude"]().build_invocation(RunOptions(prompt="x", workdir="/"))
    assert claude.argv == ["claude", "-p", "--output-format", "stream-json", "--verbose",
                           "--include-partial-messages"]
    codex = BACKEND_CLASSES["codex"]().build_invocation(RunOptions(prompt="x", workdir="/"))
    assert codex.argv == ["codex", "exec", "--skip-git-repo-check", "--json", "-"]
    resume = BACKEND_CLASSES["codex"]().build_invocation(
        RunOptions(prompt="x", workdir="/", resume_id="abc"))
    assert resume.argv == ["codex", "exec", "resume", "--skip-git-repo-check", "--json", "abc",
                           "-"]
    gemini = BACKEND_CLASSES["gemini"]().build_invocation(RunOptions(prompt="x", workdir="/"))
    assert gemini.argv == ["gemini", "--output-format", "stream-json", "--skip-trust"]


@pytest.mark.parametrize(("name", "model", "expected"), [
    ("claude", "claude", None), ("claude", None, None), ("claude", "fast", "haiku"),
    ("claude", "claude-sonnet-4-5", "claude-sonnet-4-5"), ("codex", "codex", None),
    ("codex", "balanced", "gpt-5.5"), ("gemini", "gemini", None),
    ("gemini", "fast", "gemini-2.5-flash"),
])
def test_model_resolution(name, model, expected):
    assert BACKEND_CLASSES[name]().resolve_model(model) == expected


@pytest.mark.parametrize("name", sorted(BACKEND_CLASSES))
def test_every_alias_of_a_tier_names_the_same_model(name):
    aliases = BACKEND_CLASSES[name]().aliases
    assert set(aliases) == {"fast", "quick", "balanced", "default", "best", "powerful"}
    assert aliases["quick"] == aliases["fast"]
    assert aliases["default"] == aliases["balanced"]
    assert aliases["powerful"] == aliases["best"]
    assert len({aliases["fast"], aliases["balanced"], aliases["best"]}) == 3


@pytest.mark.parametrize(("name", "sandbox", "approval", "expected"), [
    ("claude", "read-only", "none", ["--permission-mode", "plan"]),
    ("claude", "default", "auto", ["--permission-mode", "acceptEdits"]),
    ("claude", "default", "default", []),
    ("gemini", "read-only", "auto", ["--approval-mode", "plan"]),
    ("gemini", "default", "none", ["--approval-mode", "yolo"]),
    ("gemini", "default", "default", []),
])
def test_permission_flags(name, sandbox, approval, expected):
    argv = BACKEND_CLASSES[name]().build_invocation(
        RunOptions(prompt="p", workdir="/", sandbox_mode=sandbox, approval_mode=approval)).argv
    flag = "--permission-mode" if name == "claude" else "--approval-mode"
    found = [argv[i:i + 2] for i, arg in enumerate(argv) if arg == flag]
    assert found == ([expected] if expected else [])


def test_configured_aliases_override_builtins():
    backend = BACKEND_CLASSES["codex"](aliases={"fast": "my-model"})
    assert backend.resolve_model("fast") == "my-model"


def test_system_prompt_is_never_dropped():
    for name in ("codex", "gemini"):
        inv = BACKEND_CLASSES[name]().build_invocation(
            RunOptions(prompt="do it", workdir="/", system_prompt="Be brief."))
        assert inv.stdin == "Be brief.\n\ndo it"
    claude = BACKEND_CLASSES["claude"]().build_invocation(
        RunOptions(prompt="do it", workdir="/", system_prompt="Be brief."))
    assert claude.argv[-2:] == ["--append-system-prompt", "Be brief."]


def test_child_env_scrubs_clinvk_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLINVK_API_KEYS", "secret")
    monkeypatch.setenv("HOME", "/h")
    backend = BACKEND_CLASSES["claude"](env={"EXTRA": "1", "PATH": "/backend/bin"})
    env = backend.child_env()
    assert "CLINVK_API_KEYS" not in env and not any(k.startswith("CLINVK_") for k in env)
    assert env["HOME"] == "/h" and env["EXTRA"] == "1" and env["PATH"] == "/backend/bin"
    assert set(env) == {k for k in os.environ if not k.startswith("CLINVK_")} | {"EXTRA"}
    with pytest.raises(TypeError):  # shared by every run: no run may change it
        env["PATH"] = "/tmp"  # type: ignore[index]


def test_extra_flag_allowlist():
    claude = BACKEND_CLASSES["claude"]()
    assert claude.check_extra_flags(["--allowedTools", "Read"], allow_dangerous=False) is None
    assert "not allowed" in claude.check_extra_flags(["--resume", "x"], allow_dangerous=False)
    assert "ceiling" in claude.check_extra_flags(["--dangerously-skip-permissions"],
                                                 allow_dangerous=False)
    assert claude.check_extra_flags(["--dangerously-skip-permissions"],
                                    allow_dangerous=True) is None
    assert "needs a value" in claude.check_extra_flags(["--effort"], allow_dangerous=False)
