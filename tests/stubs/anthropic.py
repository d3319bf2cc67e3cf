"""Stub of the Anthropic Messages API as Claude Code 2.1 uses it.

Claude Code sends ``HEAD /`` (connection warm-up) and ``POST /v1/messages?beta=true`` with
``stream: true``; the stub also answers ``stream: false`` with one message object.
User messages whose text blocks are all ``<system-reminder>`` context are not prompts, and
``tool_result`` blocks are tool results, so the turn count is the number of real prompts.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from stubs.base import Item, Recorded, Reply, StubHandler, StubServer, chunks

ERRORS = {
    401: ("authentication_error", "invalid x-api-key (stub injected)"),
    500: ("api_error", "Internal server error (stub injected)"),
}


def is_context_text(text: str) -> bool:
    return text.lstrip().startswith("<system-reminder>")


def normalise(messages: list[dict[str, Any]]) -> list[Item]:
    items: list[Item] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if role == "user" and btype == "tool_result":
                items.append(Item("tool_result", _tool_result_text(block.get("content"))))
            elif role == "user" and btype == "text" and not is_context_text(block.get("text", "")):
                items.append(Item("prompt", block.get("text", "")))
            elif role == "assistant" and btype == "text":
                items.append(Item("assistant", block.get("text", "")))
            elif role == "assistant" and btype == "tool_use":
                items.append(Item("tool_call", str(block.get("input"))))
    # Several text blocks of one user message are one prompt.
    merged: list[Item] = []
    for item in items:
        if merged and item.kind == "prompt" and merged[-1].kind == "prompt":
            merged[-1] = Item("prompt", merged[-1].text + "\n" + item.text)
        else:
            merged.append(item)
    return merged


def _tool_result_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


MCP_KEYWORD = "CALL_MCP_TOOL"


def mcp_call(items: list[Item], tools: set[str]) -> Reply | None:
    """``CALL_MCP_TOOL <name> <json arguments>`` as the latest prompt, with that tool offered,
    is answered with a call of it (the tool's result then gets the usual "Tool said: ...")."""
    if not items or items[-1].kind != "prompt" or MCP_KEYWORD not in items[-1].text:
        return None
    _, _, rest = items[-1].text.partition(MCP_KEYWORD)
    name, _, arguments = rest.strip().partition(" ")
    if name not in tools:
        return Reply("text", text=f"No tool {name} was offered; offered: {sorted(tools)}")
    turn = sum(1 for item in items if item.kind == "prompt")
    return Reply("tool_call", tool=name, tool_input=json.loads(arguments), turn=turn)


class AnthropicStub(StubServer):
    name = "anthropic"

    def is_model_call(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.path == "/v1/messages"

    def handle(self, h: StubHandler, rec: Recorded) -> None:
        if rec.method == "HEAD" and rec.path == "/":
            rec.status, rec.reply = 200, "warm-up"
            h.send_empty(200)
            return
        if not self.is_model_call(rec) or not isinstance(rec.json, dict):
            self.not_found(h, rec)
            return
        body = rec.json
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        items = normalise(body.get("messages") or [])
        reply = mcp_call(items, tools) or self.scripted(items, can_run_shell="Bash" in tools)
        rec.reply = reply.describe()
        if reply.kind == "error":
            rec.status = reply.status
            kind, message = ERRORS.get(reply.status, ("api_error", "stub error"))
            h.send_json(reply.status,
                        {"type": "error", "error": {"type": kind, "message": message},
                         "request_id": f"req_stub_{uuid.uuid4().hex[:12]}"},
                        headers={"request-id": f"req_stub_{uuid.uuid4().hex[:12]}"})
            return
        rec.status = 200
        model = body.get("model") or "claude-stub"
        if body.get("stream"):
            self._stream(h, reply, model)
        else:
            h.send_json(200, self._message(reply, model))

    @staticmethod
    def _blocks(reply: Reply) -> list[dict[str, Any]]:
        if reply.kind == "tool_call" and reply.tool:
            return [
                {"type": "text", "text": "I'll ask another agent."},
                {"type": "tool_use", "id": f"toolu_stub_{uuid.uuid4().hex[:16]}",
                 "name": reply.tool, "input": reply.tool_input or {}},
            ]
        if reply.kind == "tool_call":
            return [
                {"type": "text", "text": "I'll run a command."},
                {"type": "tool_use", "id": f"toolu_stub_{uuid.uuid4().hex[:16]}", "name": "Bash",
                 "input": {"command": reply.command, "description": "Run the requested command"}},
            ]
        return [{"type": "text", "text": reply.text}]

    def _message(self, reply: Reply, model: str) -> dict[str, Any]:
        blocks = self._blocks(reply)
        return {
            "id": f"msg_stub_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": "tool_use" if reply.kind == "tool_call" else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 6,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def _stream(self, h: StubHandler, reply: Reply, model: str) -> None:
        message = self._message(reply, model)
        h.start_sse({"request-id": f"req_stub_{uuid.uuid4().hex[:12]}"})
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        h.sse({"type": "message_start", "message": start}, "message_start")
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                h.sse({"type": "content_block_start", "index": index,
                       "content_block": {"type": "text", "text": ""}}, "content_block_start")
                for piece in chunks(block["text"]):
                    h.sse({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": piece}},
                          "content_block_delta")
            else:
                h.sse({"type": "content_block_start", "index": index,
                       "content_block": {**block, "input": {}}}, "content_block_start")
                h.sse({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta",
                                 "partial_json": json.dumps(block["input"])}},
                      "content_block_delta")
            h.sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        h.sse({"type": "message_delta",
               "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
               "usage": {"output_tokens": message["usage"]["output_tokens"]}}, "message_delta")
        h.sse({"type": "message_stop"}, "message_stop")
