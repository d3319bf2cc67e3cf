"""Unified events → Anthropic's SSE event sequence."""

from __future__ import annotations

from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.core.types import RunStatus
from clinvk.server import compat
from clinvk.server.anthropic.translate import message_object, usage_body


class EventRenderer:
    """Unified events -> Anthropic SSE events (stateful, one per stream)."""

    def __init__(self, message_id: str, model: str, rid: str) -> None:
        self.message_id = message_id
        self.model = model
        self.request_id = rid
        self.text = compat.TextJoiner()

    def prelude(self) -> list[bytes]:
        start = message_object(self.message_id, self.model, None, TokenUsage(), final=False)
        return [
            compat.sse({"type": "message_start", "message": start}, "message_start"),
            compat.sse({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}, "content_block_start"),
        ]

    def __call__(self, event: Event) -> list[bytes] | bytes | None:
        if event.type == DONE:
            usage = TokenUsage.from_dict(event.content.get("token_usage"))
            return [
                compat.sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                compat.sse({"type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": usage_body(usage)}, "message_delta"),
                compat.sse({"type": "message_stop"}, "message_stop"),
            ]
        if event.type == ERROR:
            timed_out = event.content.get("code") == RunStatus.TIMEOUT
            kind = "timeout_error" if timed_out else "api_error"
            return compat.sse({"type": "error",
                               "error": {"type": kind,
                                         "message": event.content.get("message")
                                         or "the backend run failed"},
                               "request_id": self.request_id}, "error")
        text = self.text.feed(event)
        if text is None:
            return None
        return compat.sse({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": text}},
                          "content_block_delta")


PING = compat.sse({"type": "ping"}, "ping")
