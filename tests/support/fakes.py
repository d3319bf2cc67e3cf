"""The fake CLIs of tests/fakes: where they are, how to steer them, what they recorded."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "fakes" / "bin"
# A leaked fake never outlives this (the fakes honour it as a safety net).
FAKE_MAX_LIFETIME = "120"
BACKENDS = ("claude", "codex", "gemini")


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
