"""``clinvk mcp`` over stdio, driven by the MCP SDK's own client against the fake CLIs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from support.fakes import fake, fake_runs
from support.procs import pids_alive, wait_until

pytestmark = pytest.mark.anyio

TOOLS = {"run", "parallel", "chain", "compare", "sessions_list", "session_show"}


def _params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "clinvk", "mcp"], env=env,
                                 cwd=str(Path(env["HOME"]).parent / "work"))


async def _session(env: dict[str, str], work):
    async with stdio_client(_params(env)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def _text(result: Any) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


async def test_lists_its_tools_with_schemas_and_descriptions(mcp_env) -> None:
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in await _session(mcp_env, work)}
    assert set(tools) == TOOLS
    run = tools["run"]
    assert "prompt" in run.input_schema["required"]
    assert {"backend", "model", "workdir", "session_id", "timeout_secs"} <= set(
        run.input_schema["properties"])
    assert all(len(tool.description or "") > 40 for tool in tools.values())


async def test_run_then_continue_then_sessions(mcp_env, tmp_path) -> None:
    work_dir = str(tmp_path / "work")

    async def work(session):
        first = await session.call_tool("run", {"prompt": fake("hi", reply="pong"),
                                                "backend": "codex", "workdir": work_dir})
        sid = first.structured_content["session_id"]
        again = await session.call_tool("run", {"prompt": fake("more", reply="pong 2"),
                                                "session_id": sid})
        listed = await session.call_tool("sessions_list", {})
        shown = await session.call_tool("session_show", {"session_id": sid[:8]})
        return first, again, listed, shown

    first, again, listed, shown = await _session(mcp_env, work)
    assert not first.is_error and _text(first) == "pong"
    data = first.structured_content
    assert data["backend"] == "codex" and data["status"] == "ok" and data["exit_code"] == 0
    assert set(data["token_usage"]) >= {"input_tokens", "output_tokens"}
    assert not again.is_error and _text(again) == "pong 2"
    assert again.structured_content["session_id"] == data["session_id"]
    runs = fake_runs(Path(mcp_env["FAKE_CLI_LOG"]))
    assert "resume" in runs[-1]["argv"]  # the second turn continued the codex session
    assert [s["id"] for s in listed.structured_content["sessions"]] == [data["session_id"]]
    assert shown.structured_content["turn_count"] == 2


async def test_parallel_chain_compare(mcp_env, tmp_path) -> None:
    work_dir = str(tmp_path / "work")

    async def work(session):
        par = await session.call_tool("parallel", {"tasks": [
            {"prompt": fake("a", reply="A"), "backend": "claude", "workdir": work_dir,
             "name": "first"},
            {"prompt": fake("b", reply="B"), "backend": "gemini", "workdir": work_dir}]})
        chain = await session.call_tool("chain", {"steps": [
            {"prompt": fake("one", reply="ONE"), "backend": "codex", "workdir": work_dir},
            {"prompt": 'got {{previous}} FAKE{"reply": "{{previous}}!"}', "backend": "claude",
             "workdir": work_dir}]})
        cmp = await session.call_tool("compare", {"prompt": fake("q", reply="same"),
                                                  "backends": ["claude", "codex"],
                                                  "workdir": work_dir})
        return par, chain, cmp

    par, chain, cmp = await _session(mcp_env, work)
    assert [r["output"] for r in par.structured_content["results"]] == ["A", "B"]
    assert par.structured_content["results"][0]["name"] == "first"
    assert "## first (ok)" in _text(par)
    assert [r["output"] for r in chain.structured_content["results"]] == ["ONE", "ONE!"]
    assert [r["backend"] for r in cmp.structured_content["results"]] == ["claude", "codex"]
    assert cmp.structured_content["completed"] == 2


async def test_progress_notifications_arrive_before_the_result(mcp_env, tmp_path) -> None:
    seen: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message))

    async def work(session):
        result = await session.call_tool(
            "run", {"prompt": fake("tell me", reply="one two three four", chunk_delay=0.05),
                    "backend": "claude", "workdir": str(tmp_path / "work")},
            progress_callback=progress)
        return result, list(seen)

    result, before_result = await _session(mcp_env, work)
    assert not result.is_error
    assert len(before_result) >= 3, before_result
    assert [v for v, _ in before_result] == sorted(v for v, _ in before_result)
    assert any("claude: message" in (m or "") for _, m in before_result)


async def test_cancel_kills_the_backend_process_group(mcp_env, tmp_path) -> None:
    pidfile = Path(mcp_env["FAKE_CLI_PIDFILE"])

    async def work(session):
        with anyio.move_on_after(20) as outer:
            with anyio.move_on_after(1.5):  # abandoning the call sends notifications/cancelled
                await session.call_tool("run", {
                    "prompt": fake("never ends", hang=True, grandchild=True),
                    "backend": "claude", "workdir": str(tmp_path / "work")})
            started = time.monotonic()
            while pids_alive(pidfile) and time.monotonic() - started < 2:
                await anyio.sleep(0.05)
            gone_after = time.monotonic() - started
            alive = pids_alive(pidfile)
            # the server keeps serving after a cancelled call
            after = await session.call_tool("run", {"prompt": fake("next", reply="still here"),
                                                    "backend": "codex",
                                                    "workdir": str(tmp_path / "work")})
            return alive, gone_after, after
        assert not outer.cancelled_caught

    alive, gone_after, after = await _session(mcp_env, work)
    assert len(pidfile.read_text().split()) >= 2  # the fake and its grandchild had started
    assert alive == [] and gone_after < 2.0
    assert _text(after) == "still here"


@pytest.mark.parametrize(("tool", "arguments", "words"), [
    ("run", {"prompt": "hi", "backend": "nosuch"}, "unknown backend"),
    ("run", {"prompt": "hi", "backend": "claude", "workdir": "/etc"}, "blocked prefix"),
    ("run", {"prompt": "hi", "backend": "claude", "workdir": "relative/dir"}, "absolute"),
    ("run", {"prompt": "", "backend": "claude"}, "prompt"),
    ("run", {"prompt": "hi", "backend": "claude", "timeout_secs": -1}, "timeout_secs"),
    ("run", {"backend": "claude"}, "prompt"),
    ("run", {"prompt": "hi \x00 there", "backend": "claude"}, "NUL"),
    ("session_show", {"session_id": "ffffffffffffffffffffffffffffffff"}, "not found"),
    ("compare", {"prompt": "x", "backends": []}, "backends"),
])
async def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(
        mcp_env, tmp_path, tool, arguments, words) -> None:
    async def work(session):
        bad = await session.call_tool(tool, arguments)
        good = await session.call_tool("run", {"prompt": fake("ok", reply="fine"),
                                               "backend": "gemini",
                                               "workdir": str(tmp_path / "work")})
        return bad, good

    bad, good = await _session(mcp_env, work)
    assert bad.is_error, bad
    assert words.lower() in _text(bad).lower(), _text(bad)
    assert _text(good) == "fine"


async def test_a_failed_run_is_a_tool_error_with_the_backends_message(mcp_env, tmp_path):
    async def work(session):
        return await session.call_tool("run", {
            "prompt": fake("x", error="429"), "backend": "claude",
            "workdir": str(tmp_path / "work")})

    result = await _session(mcp_env, work)
    assert result.is_error
    assert result.structured_content["status"] != "ok"
    assert "429" in _text(result) or "rate" in _text(result).lower(), _text(result)


async def test_policy_ceiling_cannot_be_raised_by_the_client(mcp_env, tmp_path) -> None:
    Path(mcp_env["CLINVK_CONFIG"]).write_text(json.dumps({
        "server": {"allowed_workdir_prefixes": [str(tmp_path / "work")]}}))
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    async def work(session):
        return await session.call_tool("run", {"prompt": "hi", "backend": "claude",
                                               "workdir": str(outside)})

    result = await _session(mcp_env, work)
    assert result.is_error and "outside the allowed prefixes" in _text(result)
    assert wait_until(lambda: fake_runs(Path(mcp_env["FAKE_CLI_LOG"])) == [], 0.2)
