"""A real ``clinvk serve`` subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from support.fakes import FAKE_MAX_LIFETIME, fake_path_prefix

BANNER_RE = re.compile(r"starting on http://([^\s/]+):(\d+)")


def clean_environ(home: Path, clinvk_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLINVK_", "FAKE_CLI_"))}
    env["PATH"] = f"{fake_path_prefix()}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env["CLINVK_HOME"] = str(clinvk_home)
    env["FAKE_CLI_MAX_LIFETIME"] = FAKE_MAX_LIFETIME
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """A running ``clinvk serve``; ``url(path)`` for requests, ``stop()`` to end it."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, home: Path,
                 clinvk_home: Path, env: dict[str, str]) -> None:
        self.proc = proc
        self.log_path = log_path
        self.home = home
        self.clinvk_home = clinvk_home
        self.env = env
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clinvk serve exited with {self.proc.returncode}:\n"
                                   + self.log())
            if not self.port:
                match = BANNER_RE.search(self.log())
                if match:
                    self.host, self.port = match.group(1), int(match.group(2))
            if self.port:
                try:
                    if requests.get(self.url("/health"), timeout=2).status_code in (200, 503):
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise RuntimeError("clinvk serve did not become ready:\n" + self.log())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the master; after ``timeout`` kill its whole process group."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # any worker left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        return self.proc.returncode


def stop_all(servers: list[ServerProcess], timeout: float) -> None:
    """Stop every server at once: each one's graceful shutdown (up to ``timeout``) runs
    beside the others' instead of after them."""
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        list(pool.map(lambda server: server.stop(timeout=timeout), servers))


def serve_args(config: dict[str, Any] | None, args: tuple[str, ...]) -> tuple[str, ...]:
    """``serve`` arguments that bind a free port unless the test chose one: a test never
    takes 8080 (the README's server may be running there)."""
    chosen = any(a in ("--port", "-p") or a.startswith("--port=") for a in args)
    if chosen or "port" in ((config or {}).get("server") or {}):
        return args
    return ("--port", "0", *args)


def start_server(base: Path, config: dict[str, Any] | None = None, *,
                 extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (),
                 command: list[str] | None = None) -> ServerProcess:
    """Start ``clinvk --config <base>/config.yaml serve ARGS`` (or ``command``) in ``base``,
    on a free port unless ``args`` or ``config`` name one."""
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    chome = base / "clinvk-home"
    home.mkdir(exist_ok=True)
    chome.mkdir(exist_ok=True)
    env = clean_environ(home, chome)
    config_path = base / "config.yaml"
    env["CLINVK_CONFIG"] = str(config_path)
    env.update(extra_env or {})
    config_path.write_text(yaml.safe_dump(config or {}))
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        argv = command or [sys.executable, "-m", "clinvk.cli", "--config", str(config_path),
                           "serve", *serve_args(config, args)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(base), start_new_session=True,
        )
    server = ServerProcess(proc, log_path, home, chome, env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop(signal.SIGKILL, timeout=1)
        raise
    return server


