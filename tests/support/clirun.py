"""The installed ``clinvk`` entry point run as a subprocess, with a private home, against the
fake CLIs; every fake records its invocation and pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

from clinvk.core.store import default_store_path
from clinvk.core.store.sqlite import SqliteStore
from support.fakes import FAKE_BIN, REPO, fake_path_prefix, fake_runs

__all__ = ["CLINVK", "FAKE_BIN", "REPO", "Cli"]


def _entry_point() -> str:
    script = Path(sysconfig.get_path("scripts")) / "clinvk"
    if not script.exists():  # pragma: no cover - a non-standard install layout
        pytest.skip("the clinvk entry point is not installed (pip install -e .)")
    return str(script)


CLINVK = _entry_point()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Cli:
    """Runs `clinvk` with a private home; the fakes log every invocation and pid."""

    def __init__(self, tmp: Path, pycache: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "clinvk-home"
        self.log_path = tmp / "fake-runs.jsonl"
        self.pid_path = tmp / "fake-pids"
        for d in (self.home, tmp / "home"):
            d.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLINVK_", "FAKE_CLI_"))
                    and k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(
            PATH=os.pathsep.join((fake_path_prefix(), os.environ.get("PATH", ""))),
            HOME=str(tmp / "home"),
            CLINVK_HOME=str(self.home),
            FAKE_CLI_STATE_DIR=str(tmp / "fake-state"),
            FAKE_CLI_LOG=str(self.log_path),
            FAKE_CLI_PIDFILE=str(self.pid_path),
            FAKE_CLI_MAX_LIFETIME="60",
            COLUMNS="200",
            # Compile clinvk once per test session, outside the checkout.
            PYTHONPYCACHEPREFIX=str(pycache),
        )

    def popen(self, *args: str, cwd: Path | None = None, **kw: Any) -> subprocess.Popen:
        """``clinvk`` running as a shell starts it in the foreground, so a test's SIGINT is a
        Ctrl-C: SIGINT is reset to its default in the child. A background job of a
        non-interactive shell (a CI runner, ``cmd &``) starts pytest with SIGINT ignored,
        and an ignored signal stays ignored across exec, so without the reset clinvk (like
        any well-behaved program) would keep ignoring it."""
        return subprocess.Popen([CLINVK, *args], env=self.env, cwd=cwd or self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_default_sigint, **kw)

    def __call__(self, *args: str, input: str | None = None, cwd: Path | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([CLINVK, *args], env=self.env, cwd=cwd or self.tmp, input=input,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def json(self, *args: str, **kw: Any) -> Any:
        proc = self(*args, **kw)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def runs(self) -> list[dict]:
        return fake_runs(self.log_path)

    def pids(self) -> list[int]:
        if not self.pid_path.exists():
            return []
        return [int(p) for p in self.pid_path.read_text().split()]

    def store(self, clock=None) -> SqliteStore:
        return SqliteStore(default_store_path(self.home), clock=clock)

    def sessions(self) -> list[dict]:
        return self.json("sessions", "list", "--json")["sessions"]

    def leftovers(self, wait: float = 3.0) -> list[int]:
        deadline = time.monotonic() + wait
        while True:
            alive = [pid for pid in self.pids() if _alive(pid)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)
