"""Unified events → OpenAI ``chat.completion.chunk`` SSE frames."""

from __future__ import annotations

from typing import Any

from clinvk.core.engine.outcome import BACKEND_ERROR
from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.core.types import RunStatus
from clinvk.server import compat
from clinvk.server.openai.translate import usage_body

# Our error codes → the codes an OpenAI stream's error chunk carries.
_STREAM_ERROR_CODES = {RunStatus.TIMEOUT: "backend_timeout", RunStatus.CANCELLED: "run_cancelled",
                       BACKEND_ERROR: "backend_failed"}


class ChunkRenderer:
    """Unified events -> ``chat.completion.chunk`` SSE frames (stateful, one per stream)."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool
                 ) -> None:
        self.id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.text = compat.TextJoiner()

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              *, choices: bool = True, usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish_reason}] if choices else [],
        }
        if self.include_usage:
            body["usage"] = usage
        return compat.sse(body)

    def prelude(self) -> list[bytes]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def __call__(self, event: Event) -> list[bytes] | bytes | None:
        if event.type == DONE:
            frames = [self.chunk({}, "stop")]
            if self.include_usage:
                usage = TokenUsage.from_dict(event.content.get("token_usage"))
                frames.append(self.chunk({}, choices=False, usage=usage_body(usage)))
            frames.append(compat.sse("[DONE]"))
            return frames
        if event.type == ERROR:
            content = event.content
            code = _STREAM_ERROR_CODES.get(content.get("code"), content.get("code"))
            error = {"message": content.get("message") or "the backend run failed",
                     "type": "server_error", "param": None, "code": code}
            return [compat.sse({"error": error}), compat.sse("[DONE]")]
        text = self.text.feed(event)
        if text is None:
            return None
        return self.chunk({"content": text})
