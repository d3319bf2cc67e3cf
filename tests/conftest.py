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
* ``redis_url`` / ``postgres_url`` — a private redis-server / PostgreSQL for the session.
* ``env`` — for engine-level tests: fakes on PATH and an argv log under ``tmp_path``.

Plain helpers (no fixtures) live in ``tests/support/`` and are imported normally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fakes import fake_path_prefix
from support.server_process import ServerProcess, clean_environ, start_server, stop_all
from support.services import install_missing, postgres_server, redis_server


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
    env = clean_environ(home, clinvk_home)
    for key in list(os.environ):
        if key.startswith(("CLINVK_", "FAKE_CLI_")) and key not in env:
            monkeypatch.delenv(key)
    for key in ("PATH", "HOME", "CLINVK_HOME", "FAKE_CLI_MAX_LIFETIME"):
        monkeypatch.setenv(key, env[key])
    return env


@pytest.fixture
def app_factory(fake_path: dict[str, str], clinvk_home: Path) -> Iterator[Callable[..., Any]]:
    """``app_factory({"server.response_envelope": False}, store=...)`` -> a Flask app."""
    from clinvk.core.config import load_config
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


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> ServerProcess:
        server = start_server(tmp_path_factory.mktemp("server"), config, **kwargs)
        started.append(server)
        return server

    yield factory
    stop_all(started, timeout=10)


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    srv = server_factory()
    yield srv
    srv.stop(timeout=10)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Engine-level tests: fakes on PATH, an isolated HOME for their state, an argv log
    (``tmp_path/fake.log``), a clinvk home and a work directory under ``tmp_path``."""
    log = tmp_path / "fake.log"
    monkeypatch.setenv("PATH", f"{fake_path_prefix()}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_CLI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    monkeypatch.setenv("CLINVK_HOME", str(tmp_path / "clinvk"))
    (tmp_path / "work").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url


WORKERS = 2  # the CI machine's cores


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Iterator[object]:
    """Two pytest-xdist workers, one test file at a time each (``--dist loadfile``: a
    module-scoped gunicorn, redis or PostgreSQL is built once per file), unless the command
    line says otherwise: ``-n N`` / ``-n 0`` win, ``-p no:xdist`` and ``--pdb`` run
    serially. A wrapper, so the default is in place before xdist reads the options."""
    option = config.option
    if (config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput")
            and getattr(option, "numprocesses", None) is None
            and not option.usepdb and not option.collectonly):
        option.numprocesses = WORKERS
        if option.dist == "no":
            option.dist = "loadfile"
    return (yield)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install the servers the collected tests need before the first one starts (outside
    every test's timeout). Under pytest-xdist every worker collects the whole suite and
    gets here (the controller collects nothing); their installs take turns
    (``install_turn``) and the second finds the first one's."""
    wanted: set[str] = set()
    for item in session.items:
        names = set(getattr(item, "fixturenames", ()))
        if "postgres_url" in names:
            wanted.add("postgresql")
        module = getattr(item, "module", None)  # tests that start their own redis
        if "redis_url" in names or (module is not None and "redis_server" in vars(module)):
            wanted.add("redis")
    if wanted and not session.config.option.collectonly:
        install_missing(wanted)

