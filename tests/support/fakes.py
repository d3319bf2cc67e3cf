"""The fake CLIs of tests/fakes: where they are, how to steer them, what they recorded."""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "fakes" / "bin"
# A leaked fake never outlives this (the fakes honour it as a safety net).
FAKE_MAX_LIFETIME = "120"
BACKENDS = ("claude", "codex", "gemini")

_FAST_PYTHON: list[Path] = []


def fast_python_dir() -> Path:
    """A directory holding a ``python3`` that runs this interpreter with ``-S``: put it on
    ``PATH`` right after :data:`FAKE_BIN` and the fakes' ``#!/usr/bin/env python3`` skips
    version-manager shims (a pyenv shim is a bash script) and the site-packages ``.pth``
    hooks. The fakes need only the standard library; together this is most of a fake's
    start-up. One directory per test process, removed when it exits."""
    if not _FAST_PYTHON:
        directory = Path(tempfile.mkdtemp(prefix="clinvk-fast-python-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        wrapper = directory / "python3"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
        wrapper.chmod(0o755)
        _FAST_PYTHON.append(directory)
    return _FAST_PYTHON[0]


def fake_path_prefix() -> str:
    """The ``PATH`` entries that put the fake CLIs first, started by the fast interpreter."""
    return os.pathsep.join((str(FAKE_BIN), str(fast_python_dir())))


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
