"""Shared pieces for engine-level tests: fakes on PATH, an engine, a request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import fake_runs

from clinvk.config import load_config
from clinvk.engine import Engine, PromptRequest
from clinvk.sessions import SessionStore

FAKES = Path(__file__).parent / "fakes" / "bin"
BACKENDS = ("claude", "codex", "gemini")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fakes on PATH, an isolated HOME for their state, and an argv log."""
    log = tmp_path / "fake.log"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_CLI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    monkeypatch.setenv("CLINVK_HOME", str(tmp_path / "clinvk"))
    (tmp_path / "work").mkdir()
    return tmp_path


def logged(tmp_path: Path) -> list[dict]:
    return fake_runs(tmp_path / "fake.log")


def make_engine(tmp_path: Path, *, server_mode: bool = False, **overrides) -> Engine:
    config = load_config(env={"CLINVK_HOME": str(tmp_path / "clinvk")})
    if overrides:
        config = config.with_overrides(overrides)
    store = SessionStore(tmp_path / "clinvk" / "sessions.db")
    return Engine(config, store, server_mode=server_mode)


def request(tmp_path: Path, backend: str, prompt: str = "say hi", **kw) -> PromptRequest:
    return PromptRequest(prompt=prompt, backend=backend, workdir=str(tmp_path / "work"), **kw)


