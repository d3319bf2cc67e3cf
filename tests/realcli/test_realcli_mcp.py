"""The pinned real Claude Code with clinvk as its MCP server (docs/mcp.md, the `--mcp-config`
form of `claude mcp add`): the stub model asks for clinvk's `run` tool, claude calls it over
stdio, clinvk runs the (fake) codex, and the stub sees the tool's answer in the next request.
"""

from __future__ import annotations

import json
import os
import sys

from support.fakes import FAKE_BIN, REPO, fake, fake_runs

from clinvk.core.types import RunStatus

TOOL = "mcp__clinvk__run"


def test_claude_calls_clinvk_run_over_mcp(world, tmp_path) -> None:
    mcp_home = tmp_path / "mcp-clinvk-home"
    log = tmp_path / "mcp-fake.log"
    (tmp_path / "mcp-config.yaml").write_text("{}\n")
    # In print mode claude connects MCP servers in the background and may send its first model
    # request before clinvk's tools are listed (failed 2 of 4 CI runs under load).
    # `alwaysLoad` makes the server required at startup; MCP_CONNECT_TIMEOUT_MS lifts the
    # 5 s default wait for it, so the first request always offers the tool.
    world.boxes["claude"].env["MCP_CONNECT_TIMEOUT_MS"] = "60000"
    servers = {"mcpServers": {"clinvk": {
        "alwaysLoad": True,
        "command": sys.executable, "args": ["-m", "clinvk", "mcp"],
        "env": {"PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(REPO), "CLINVK_HOME": str(mcp_home),
                "CLINVK_CONFIG": str(tmp_path / "mcp-config.yaml"),
                "HOME": str(tmp_path), "FAKE_CLI_LOG": str(log),
                "FAKE_CLI_MAX_LIFETIME": "120"}}}}
    config = tmp_path / "claude-mcp.json"
    config.write_text(json.dumps(servers))
    arguments = {"prompt": fake("second opinion?", reply="codex says ship it"),
                 "backend": "codex", "workdir": str(world.workdir)}
    run = world.run("claude", f"CALL_MCP_TOOL {TOOL} {json.dumps(arguments)}",
                    approval_mode="always",
                    extra_flags=["--mcp-config", str(config), "--strict-mcp-config",
                                 "--allowedTools", TOOL])
    result = run.result
    assert result.status == RunStatus.OK, (result.error, result.stderr_tail)
    calls = world.stubs["claude"].model_calls()
    offered = {t.get("name") for t in calls[0].json.get("tools") or []}
    assert TOOL in offered, sorted(offered)
    assert [c.reply for c in calls][0].startswith(f"tool_call {TOOL} ")
    # clinvk ran the fake codex with the tool's prompt, and its answer reached the model
    runs = fake_runs(log)
    assert [r["cli"] for r in runs] == ["codex"], runs
    assert "second opinion?" in (runs[0]["stdin"] or "")
    assert "codex says ship it" in json.dumps(calls[-1].json["messages"][-1])
    assert "Tool said:" in result.output and "codex says ship it" in result.output
