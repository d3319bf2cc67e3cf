"""The "REAL CLI SUITE SKIPPED" banner, serial and on pytest-xdist workers.

An inner pytest runs one real-CLI test file with an empty install cache and, first on
PATH, an ``npm`` that fails as npm does when its registry is unreachable. Under
xdist the banner is written by the controller, which only sees the workers' reports: the
reason and npm's output must reach it through them. Under ``CI=true`` the same run fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OFFLINE_NPM = """#!/bin/sh
echo 'npm error code ECONNREFUSED' >&2
echo 'npm error FetchError: request to http://127.0.0.1:9/x failed, reason: connect \
ECONNREFUSED 127.0.0.1:9' >&2
exit 1
"""


def run_offline(tmp_path: Path, workers: str, **env_vars: str) -> subprocess.CompletedProcess:
    """The inner pytest with npm's registry unreachable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "CLINVK_REALCLI_")) and k != "CI"}
    npm = tmp_path / "bin" / "npm"
    npm.parent.mkdir()
    npm.write_text(OFFLINE_NPM)
    npm.chmod(0o755)
    env.update(CLINVK_REALCLI_CACHE=str(tmp_path / "cache"),
               PATH=f"{npm.parent}{os.pathsep}{env.get('PATH', '')}", **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", workers, "-p", "no:cacheprovider",
         str(HERE / "test_realcli_mcp.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_under_ci_an_unreachable_registry_fails_the_run(tmp_path: Path) -> None:
    proc = run_offline(tmp_path, "0", CI="true")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "cannot install the pinned CLIs" in proc.stdout and "(CI is set)" in proc.stdout


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_unreachable_registry_gives_the_banner_with_npms_error(tmp_path: Path,
                                                                  workers: str) -> None:
    proc = run_offline(tmp_path, workers)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]  # a skip, not a failure
    banner = out.split("REAL CLI SUITE SKIPPED", 1)
    assert len(banner) == 2, out[-3000:]
    assert "real-CLI suite skipped: cannot install the pinned CLIs" in banner[1]
    assert "The real claude/codex/gemini CLIs were NOT exercised" in banner[1]
    assert banner[1].count("npm error code ECONNREFUSED") == 1, banner[1]
