"""Engine-level helpers: an engine over the fakes, a request, the argv log (with the ``env``
fixture of conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinvk.core.config import load_config
from clinvk.core.engine import Engine, PromptRequest
from clinvk.core.store.sqlite import SqliteStore
from support.fakes import fake_runs


def logged(tmp_path: Path) -> list[dict[str, Any]]:
    return fake_runs(tmp_path / "fake.log")


def make_engine(tmp_path: Path, *, server_mode: bool = False, **overrides: Any) -> Engine:
    config = load_config(env={"CLINVK_HOME": str(tmp_path / "clinvk")})
    if overrides:
        config = config.with_overrides(overrides)
    store = SqliteStore(tmp_path / "clinvk" / "sessions.db")
    return Engine(config, store, server_mode=server_mode)


def request(tmp_path: Path, backend: str, prompt: str = "say hi", **kw: Any) -> PromptRequest:
    return PromptRequest(prompt=prompt, backend=backend, workdir=str(tmp_path / "work"), **kw)
