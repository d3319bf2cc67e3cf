"""The unified event model (docs/api.md, Streaming): one shape for every backend's stream.

Backends turn their CLI's stream lines into :class:`Event` objects; the runner stamps
``sequence``/``timestamp``/``backend``/``session_id`` as they are emitted, and the edges
serialise them (NDJSON natively, SSE for the compatible APIs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

INIT = "init"
MESSAGE = "message"
THINKING = "thinking"
TOOL_USE = "tool_use"
TOOL_RESULT = "tool_result"
ERROR = "error"
DONE = "done"

EVENT_TYPES = (INIT, MESSAGE, THINKING, TOOL_USE, TOOL_RESULT, ERROR, DONE)
TERMINAL_TYPES = (ERROR, DONE)


@dataclass
class TokenUsage:
    """Normalised usage: ``input_tokens`` always includes cached input."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: TokenUsage) -> TokenUsage:
        cost = None
        if self.cost_usd is not None or other.cost_usd is not None:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            cost,
        )

    def since(self, earlier: TokenUsage) -> TokenUsage:
        """What was added after ``earlier`` (never negative: usage only grows)."""
        cost = self.cost_usd
        if cost is not None and earlier.cost_usd is not None:
            cost = max(cost - earlier.cost_usd, 0.0)
        return TokenUsage(
            max(self.input_tokens - earlier.input_tokens, 0),
            max(self.output_tokens - earlier.output_tokens, 0),
            max(self.cached_tokens - earlier.cached_tokens, 0),
            max(self.reasoning_tokens - earlier.reasoning_tokens, 0),
            cost,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TokenUsage:
        data = data or {}
        return cls(
            int(data.get("input_tokens") or 0),
            int(data.get("output_tokens") or 0),
            int(data.get("cached_tokens") or 0),
            int(data.get("reasoning_tokens") or 0),
            data.get("cost_usd"),
        )


_EPOCH = datetime(1970, 1, 1)  # naive UTC: isoformat() then has no offset to strip


def utc_timestamp(epoch: float | None = None) -> str:
    """RFC 3339 UTC timestamp with milliseconds (``2026-12-07T17:35:17.123Z``).

    Built as epoch + timedelta on a naive UTC datetime: the same microsecond rounding as
    ``datetime.fromtimestamp(epoch, UTC)`` (tests/core/test_events.py compares them) without
    a time zone to format and strip; a session list formats two per row."""
    seconds = time.time() if epoch is None else epoch
    return (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="milliseconds") + "Z"


@dataclass
class Event:
    type: str
    content: dict[str, Any] = field(default_factory=dict)
    backend: str = ""
    session_id: str | None = None
    timestamp: str = ""
    sequence: int = 0
    # When the run emitted it (epoch seconds); ``timestamp`` is formatted from it when the
    # event is first written out: a run read to completion writes none of its events.
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "backend": self.backend}
        if self.session_id:
            data["session_id"] = self.session_id
        if not self.timestamp and self.at:
            self.timestamp = utc_timestamp(self.at)
        data["timestamp"] = self.timestamp
        data["sequence"] = self.sequence
        data["content"] = self.content
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


def message(text: str, *, partial: bool = True, role: str = "assistant") -> Event:
    return Event(MESSAGE, {"text": text, "role": role, "is_partial": partial})


def thinking(text: str) -> Event:
    return Event(THINKING, {"text": text})


def tool_use(tool_id: str, tool_name: str, tool_input: Any) -> Event:
    return Event(TOOL_USE, {"tool_id": tool_id, "tool_name": tool_name, "input": tool_input})


def tool_result(tool_id: str, output: Any, *, is_error: bool = False) -> Event:
    return Event(TOOL_RESULT, {"tool_id": tool_id, "output": output, "is_error": is_error})


def init(backend_session_id: str | None, model: str | None, working_dir: str | None) -> Event:
    return Event(
        INIT,
        {"backend_session_id": backend_session_id, "model": model, "working_dir": working_dir},
    )
