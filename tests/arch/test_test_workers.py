"""How ``python3 -m pytest`` runs: two pytest-xdist workers, one file at a time each, and a
serial run with ``-n 0`` or ``-p no:xdist`` (tests/conftest.py, pytest_cmdline_main)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = "tests/arch/test_test_tree.py"  # one quick test without fixtures


def _pytest(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           *args, TARGET], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_the_default_is_two_workers_one_file_at_a_time() -> None:
    out = _pytest()
    assert "created: 2/2 workers" in out and "LoadFileScheduling" in out, out


def test_without_the_plugin_the_run_is_serial() -> None:
    # `-n 0` is xdist's own switch; `-p no:xdist` is ours to keep working: with `-n 2` in
    # addopts it failed with "unrecognized arguments".
    out = _pytest("-p", "no:xdist")
    assert "[gw" not in out and "1 passed" in out, out
