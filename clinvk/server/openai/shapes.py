"""The Response object and its ``response.*`` stream events (OpenAI Responses API).

One :class:`ResponseShape` per turn renders unified events into the documented event
sequence; the same shape renders a foreground turn as it runs and a background turn
replayed from its job's log (docs/openai.md, "Responses API").
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.server import compat


class ResponseShape:
    """Builds the Response object and its stream events for one turn."""

    def __init__(self, response_id: str, model: str, args: dict[str, Any], *,
                 created_at: float | None = None, background: bool = False) -> None:
        self.id = response_id
        # A background response is replayed from its job log on every read: its item id
        # must come out the same each time, so it derives from the response id.
        self.item_id = "msg_" + (response_id[-24:] if background else secrets.token_hex(12))
        self.model = model
        self.args = args
        self.created_at = int(time.time() if created_at is None else created_at)
        self.background = background
        self.sequence = 0
        self.text: list[str] = []
        self.joiner = compat.TextJoiner()
        #: Called with the final Response object when a streamed turn ends (stored turns).
        self.on_finish: Callable[[dict[str, Any]], None] | None = None

    def part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def item(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self.part(text)]
        return {"id": self.item_id, "type": "message", "status": status,
                "role": "assistant", "content": content}

    def body(self, status: str, text: str | None = None, usage: TokenUsage | None = None,
             error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "error": error,
            "incomplete_details": None, "instructions": self.args.get("instructions"),
            "metadata": self.args.get("metadata") or {},
            "output": [] if text is None else [self.item("completed", text)],
            "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
            "temperature": None, "top_p": None, "text": {"format": {"type": "text"}},
            "previous_response_id": self.args.get("previous_response_id"),
            "store": self.args.get("store") is not False, "background": self.background,
            "usage": None if usage is None else usage_body(usage),
        }

    def finish(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.on_finish is not None:
            self.on_finish(body)
        return body

    def event(self, kind: str, **fields_: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields_}
        self.sequence += 1
        return compat.sse(body, event=kind)

    def at(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def prelude(self) -> list[bytes]:
        return [
            self.event("response.created", response=self.body("in_progress")),
            self.event("response.in_progress", response=self.body("in_progress")),
            self.event("response.output_item.added", output_index=0,
                       item=self.item("in_progress", None)),
            self.event("response.content_part.added", part=self.part(""), **self.at()),
        ]

    def __call__(self, event: Event) -> list[bytes] | bytes | None:
        if event.type == DONE:
            text = "".join(self.text)
            usage = TokenUsage.from_dict(event.content.get("token_usage"))
            return [
                self.event("response.output_text.done", text=text, logprobs=[], **self.at()),
                self.event("response.content_part.done", part=self.part(text), **self.at()),
                self.event("response.output_item.done", output_index=0,
                           item=self.item("completed", text)),
                self.event("response.completed", response=self.finish(
                    self.body("completed", text, usage))),
            ]
        if event.type == ERROR:
            error = {"code": "server_error",
                     "message": event.content.get("message") or "the backend run failed"}
            return self.event("response.failed",
                              response=self.finish(self.body("failed", error=error)))
        text = self.joiner.feed(event)
        if text is None:
            return None
        self.text.append(text)
        return self.event("response.output_text.delta", delta=text, logprobs=[], **self.at())


def usage_body(usage: TokenUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
