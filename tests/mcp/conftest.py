"""Fixtures of the MCP tests: the environment a ``clinvk mcp`` subprocess runs in (the fake
CLIs on PATH, a private home, an argv log) and the anyio backend."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.fakes import REPO, fake_path_prefix


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def mcp_env(tmp_path: Path) -> dict[str, str]:
    """Environment of the server process; ``mcp_env["FAKE_CLI_LOG"]`` is the argv log."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "config.yaml").write_text("{}\n")
    return {
        "PATH": f"{fake_path_prefix()}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "CLINVK_HOME": str(tmp_path / "clinvk-home"),
        "CLINVK_CONFIG": str(tmp_path / "config.yaml"),
        "FAKE_CLI_LOG": str(tmp_path / "fake.log"),
        "FAKE_CLI_PIDFILE": str(tmp_path / "fake.pids"),
        "FAKE_CLI_STATE_DIR": str(tmp_path / "fake-state"),
        "FAKE_CLI_MAX_LIFETIME": "120",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHON": sys.executable,
    }
