"""Stub of the OpenAI Responses API as Codex CLI 0.171 uses it.

Codex (custom provider, ``wire_api = "responses"``) sends ``POST {base_url}/responses`` with
``stream: true`` and reads SSE events: ``response.created``, ``response.output_item.added``,
``response.output_text.delta``, ``response.output_item.done`` and ``response.completed``.
Its ``input`` carries developer instructions and ``<environment_context>``-style user
items before the prompt; those are context, not prompts. A shell tool call is a
``function_call`` item for the ``exec_command`` tool (or ``shell`` in older schemas).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from stubs.base import (
    Item,
    Recorded,
    Reply,
    StubHandler,
    StubServer,
    chunks,
    tool_output_text,
)

ERRORS = {
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (stub injected)"),
    500: ("server_error", None, "Internal server error (stub injected)"),
}
SHELL_TOOLS = ("exec_command", "shell", "local_shell")


def is_context_text(text: str) -> bool:
    head = text.lstrip()
    return head.startswith("<") and head.split(">", 1)[0].strip("<").replace("_", "").isalpha()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def normalise(inputs: list[dict[str, Any]]) -> list[Item]:
    items: list[Item] = []
    for entry in inputs:
        if not isinstance(entry, dict):
            continue
        etype = entry.get("type", "message")
        role = entry.get("role")
        if etype == "message" and role == "user":
            text = _text_of(entry.get("content"))
            if text and not is_context_text(text):
                items.append(Item("prompt", text))
        elif etype == "message" and role == "assistant":
            items.append(Item("assistant", _text_of(entry.get("content"))))
        elif etype in ("function_call", "local_shell_call", "custom_tool_call"):
            items.append(Item("tool_call", str(entry.get("arguments") or entry.get("action"))))
        elif etype in ("function_call_output", "local_shell_call_output",
                       "custom_tool_call_output"):
            output = entry.get("output")
            if isinstance(output, dict):
                output = output.get("content") or output.get("output") or json.dumps(output)
            elif isinstance(output, list):
                output = _text_of(output)
            items.append(Item("tool_result", tool_output_text(output)))
    return items


def shell_tool(tools: list[Any]) -> tuple[str, str] | None:
    """(tool name, name of its command parameter) of the shell tool codex offers."""
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        name = tool.get("name")
        if name in SHELL_TOOLS:
            props = ((tool.get("parameters") or {}).get("properties") or {})
            for param in ("cmd", "command"):
                if param in props:
                    return name, param
            return name, "cmd"
    return None


class OpenAIResponsesStub(StubServer):
    name = "openai-responses"

    def is_model_call(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.path.endswith("/responses")

    def handle(self, h: StubHandler, rec: Recorded) -> None:
        if not self.is_model_call(rec) or not isinstance(rec.json, dict):
            self.not_found(h, rec)
            return
        body = rec.json
        shell = shell_tool(body.get("tools") or [])
        reply = self.scripted(normalise(body.get("input") or []), can_run_shell=shell is not None)
        rec.reply = reply.describe()
        request_id = f"req_stub_{uuid.uuid4().hex[:12]}"
        if reply.kind == "error":
            rec.status = reply.status
            etype, code, message = ERRORS.get(reply.status, ("server_error", None, "stub error"))
            h.send_json(reply.status,
                        {"error": {"message": message, "type": etype, "param": None,
                                   "code": code}},
                        headers={"x-request-id": request_id})
            return
        rec.status = 200
        h.start_sse({"x-request-id": request_id})
        self._stream(h, reply, body.get("model") or "gpt-stub", shell)

    def _stream(self, h: StubHandler, reply: Reply, model: str,
                shell: tuple[str, str] | None) -> None:
        response_id = f"resp_stub_{uuid.uuid4().hex[:16]}"
        seq = 0

        def send(event: dict[str, Any]) -> None:
            nonlocal seq
            event["sequence_number"] = seq
            seq += 1
            h.sse(event, event["type"])

        base = {"id": response_id, "object": "response", "model": model, "output": []}
        send({"type": "response.created", "response": {**base, "status": "in_progress"}})
        output: list[dict[str, Any]] = []
        if reply.kind == "tool_call" and shell is not None:
            name, param = shell
            item = {"id": f"fc_stub_{uuid.uuid4().hex[:12]}", "type": "function_call",
                    "status": "completed", "name": name,
                    "call_id": f"call_stub_{uuid.uuid4().hex[:12]}",
                    "arguments": json.dumps({param: reply.command})}
            send({"type": "response.output_item.added", "output_index": 0,
                  "item": {**item, "status": "in_progress", "arguments": ""}})
            send({"type": "response.output_item.done", "output_index": 0, "item": item})
            output.append(item)
        else:
            item_id = f"msg_stub_{uuid.uuid4().hex[:12]}"
            send({"type": "response.output_item.added", "output_index": 0,
                  "item": {"id": item_id, "type": "message", "role": "assistant",
                           "status": "in_progress", "content": []}})
            send({"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
                  "content_index": 0,
                  "part": {"type": "output_text", "text": "", "annotations": []}})
            for piece in chunks(reply.text):
                send({"type": "response.output_text.delta", "item_id": item_id,
                      "output_index": 0, "content_index": 0, "delta": piece})
            send({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                  "content_index": 0, "text": reply.text})
            item = {"id": item_id, "type": "message", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}
            send({"type": "response.output_item.done", "output_index": 0, "item": item})
            output.append(item)
        usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": 106}
        send({"type": "response.completed",
              "response": {**base, "status": "completed", "output": output, "usage": usage}})
