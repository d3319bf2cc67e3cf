"""Shared fixtures: fake CLIs on PATH, a private clinvk home, the Flask app, a real server.

Kept generic on purpose (several test modules use them):

* ``clinvk_home`` — an empty clinvk home; ``CLINVK_HOME`` points at it.
* ``fake_path`` — ``PATH`` starts with ``tests/fakes/bin`` (the fake claude/codex/gemini),
  ``HOME`` is a temporary directory (the fakes keep their session state there), no
  ``CLINVK_*``/``FAKE_CLI_*`` variables leak in from the developer's shell. Returns the
  environment as a dict, ready for ``subprocess``.
* ``app`` / ``client`` — the gateway app (``create_app``) over both, and its test client.
* ``server_factory`` — starts a real ``clinvk serve`` (gunicorn) subprocess on a free port
  with a given config and waits for ``/health``; every server it started is stopped at the
  end of the session, and nothing it started may outlive it.
* ``server`` — one such server with the default config, shared by a test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE_BIN = REPO / "tests" / "fakes" / "bin"
BANNER_RE = re.compile(r"starting on http://([^\s/]+):(\d+)")
# A leaked fake never outlives this (the fakes honour it as a safety net).
FAKE_MAX_LIFETIME = "120"


def _clean_environ(home: Path, clinvk_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLINVK_", "FAKE_CLI_"))}
    env["PATH"] = f"{FAKE_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env["CLINVK_HOME"] = str(clinvk_home)
    env["FAKE_CLI_MAX_LIFETIME"] = FAKE_MAX_LIFETIME
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def clinvk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "clinvk-home"
    home.mkdir()
    monkeypatch.setenv("CLINVK_HOME", str(home))
    return home


@pytest.fixture
def fake_path(tmp_path: Path, clinvk_home: Path, monkeypatch: pytest.MonkeyPatch
              ) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_environ(home, clinvk_home)
    for key in list(os.environ):
        if key.startswith(("CLINVK_", "FAKE_CLI_")) and key not in env:
            monkeypatch.delenv(key)
    for key in ("PATH", "HOME", "CLINVK_HOME", "FAKE_CLI_MAX_LIFETIME"):
        monkeypatch.setenv(key, env[key])
    return env


@pytest.fixture
def app_factory(fake_path: dict[str, str], clinvk_home: Path) -> Iterator[Callable[..., Any]]:
    """``app_factory({"server.response_envelope": False}, store=...)`` -> a Flask app."""
    from clinvk.config import load_config
    from clinvk.server.app import create_app

    apps = []

    def factory(overrides: dict[str, Any] | None = None, **kwargs: Any):
        config = load_config(env=fake_path)
        if overrides:
            config = config.with_overrides(overrides, source="test")
        application = create_app(config, **kwargs)
        application.config["TESTING"] = True
        apps.append(application)
        return application

    yield factory
    for application in apps:
        with contextlib.suppress(Exception):
            application.extensions["clinvk"].store.close()


@pytest.fixture
def app(app_factory: Callable[..., Any]):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


# --------------------------------------------------------------------------- real server


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


def start_server(base: Path, config: dict[str, Any] | None = None, *,
                 extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ("--port", "0"),
                 command: list[str] | None = None) -> ServerProcess:
    """Start ``clinvk --config <base>/config.yaml serve ARGS`` (or ``command``) in ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    chome = base / "clinvk-home"
    home.mkdir(exist_ok=True)
    chome.mkdir(exist_ok=True)
    env = _clean_environ(home, chome)
    config_path = base / "config.yaml"
    env["CLINVK_CONFIG"] = str(config_path)
    env.update(extra_env or {})
    config_path.write_text(yaml.safe_dump(config or {}))
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        argv = command or [sys.executable, "-m", "clinvk.cli", "--config", str(config_path),
                           "serve", *args]
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


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> ServerProcess:
        server = start_server(tmp_path_factory.mktemp("server"), config, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(timeout=10)


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    srv = server_factory()
    yield srv
    srv.stop(timeout=10)


# --------------------------------------------------------------------------- helpers


def pids_alive(pidfile: Path) -> list[int]:
    """Pids listed in a fake CLI ``pidfile`` that still exist (zombies count as gone)."""
    if not pidfile.exists():
        return []
    alive = []
    for line in pidfile.read_text().split():
        pid = int(line)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def fake(prompt: str, **knobs: Any) -> str:
    """A prompt carrying a ``FAKE{...}`` directive for the fake CLIs."""
    return f"{prompt} FAKE{json.dumps(knobs)}"


def fake_runs(log_path: Path, containing: str = "") -> list[dict[str, Any]]:
    """The fake CLIs' invocations recorded in ``FAKE_CLI_LOG`` (tests/fakes/README.md),
    optionally only those whose stdin carried ``containing``."""
    if not log_path.exists():
        return []
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [r for r in records if containing in (r.get("stdin") or "")] if containing \
        else records


def marker() -> str:
    """A unique word to put in a prompt and find its run again."""
    return f"mark-{uuid.uuid4().hex[:10]}"


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation (the OpenAI and Anthropic message shape)."""
    return [{"role": "user", "content": text}]
