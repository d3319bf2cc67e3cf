"""``clinvk worker`` subprocesses standing for agent hosts (own HOME, own host name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.server_process import clean_environ


class AgentHost:
    """One running ``clinvk worker``; its CLIs log every run to ``runs_log``."""

    def __init__(self, base: Path, name: str, broker_url: str, concurrency: int,
                 env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}
        self.base = base
        self.name = name
        self.broker_url = broker_url
        self.concurrency = concurrency
        self.home = base / "home"
        self.runs_log = base / "runs.jsonl"
        self.log_path = base / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        import redis

        self.home.mkdir(parents=True, exist_ok=True)
        env = clean_environ(self.home, self.base / "clinvk-home")
        env["FAKE_CLI_LOG"] = str(self.runs_log)
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clinvk.cli", "worker", "--broker-url", self.broker_url,
                 "--name", self.name, "--concurrency", str(self.concurrency)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.base), start_new_session=True)
        client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
        deadline = time.monotonic() + timeout
        # ready = its host record is in Redis and Celery consumes its queues
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if client.exists(f"clinvk:host:{self.name}") and b"ready." in self.log_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} did not start:\n{self.log()}")

    def log_bytes(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def log(self) -> str:
        return self.log_bytes().decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the worker alone (its CLIs, in their own process groups, live on)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for runs
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
