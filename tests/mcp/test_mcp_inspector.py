"""A client no one here wrote: the MCP Inspector's CLI mode (npm
``@modelcontextprotocol/inspector``) lists clinvk's tools and calls one.

The pinned Inspector is installed into a cache directory on first use
(``${XDG_CACHE_HOME:-~/.cache}/clinvk-mcp-inspector/<version>``). Without node/npm or the
registry the test is skipped with the reason, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.fakes import fake

INSPECTOR_VERSION = "2.12.0"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def inspector() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed: the MCP Inspector needs it")
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = (Path(xdg) if xdg else Path.home() / ".cache") / "clinvk-mcp-inspector"
    prefix = root / INSPECTOR_VERSION
    binary = prefix / "node_modules" / ".bin" / "mcp-inspector"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        work = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
        (work / "package.json").write_text(json.dumps(
            {"private": True, "dependencies": {"@modelcontextprotocol/inspector":
                                               INSPECTOR_VERSION}}))
        try:
            proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                                   "--no-package-lock", "--loglevel=error"], cwd=work,
                                  capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(work, ignore_errors=True)
            _unavailable("npm install of the MCP Inspector did not finish in 300 s")
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            _unavailable("npm install of the MCP Inspector failed: " + proc.stderr[-500:])
        shutil.rmtree(prefix, ignore_errors=True)
        work.rename(prefix)
    return binary


def _inspect(mcp_env: dict[str, str], *method: str) -> dict:
    env_args = [arg for key, value in mcp_env.items() for arg in ("-e", f"{key}={value}")]
    proc = subprocess.run(
        [str(inspector()), "--cli", *env_args, sys.executable, "-m", "clinvk", "mcp", *method],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        env={**os.environ, "PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_the_inspector_lists_and_calls_a_tool(mcp_env, tmp_path) -> None:
    listed = _inspect(mcp_env, "--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == {
        "run", "parallel", "chain", "compare", "sessions_list", "session_show"}
    called = _inspect(mcp_env, "--method", "tools/call", "--tool-name", "run",
                      "--tool-arg", f"prompt={fake('hi', reply='from the inspector')}",
                      "--tool-arg", "backend=gemini",
                      "--tool-arg", f"workdir={tmp_path / 'work'}")
    assert called["content"][0]["text"] == "from the inspector"
    assert called["structuredContent"]["backend"] == "gemini"
    assert not called.get("isError")
