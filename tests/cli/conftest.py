"""Fixtures of the CLI tests: ``cli`` runs the installed ``clinvk`` with a private home and
fails the test if a fake CLI process outlives it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.clirun import Cli


@pytest.fixture(scope="session")
def cli_pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def cli(tmp_path: Path, cli_pycache: Path):
    runner = Cli(tmp_path, cli_pycache)
    yield runner
    left = runner.leftovers()
    for pid in left:  # clean up before failing, so one bug does not leak into other tests
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"fake processes outlived the test: {left}"
