"""Stub of the Gemini API as gemini-cli 0.61 uses it (through @google/genai).

Model calls are ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` (the answer)
and ``POST /v1beta/models/<model>:generateContent`` (the model router and other utility
calls that want JSON matching ``generationConfig.responseJsonSchema``); ``:countTokens``
is answered too. The first user content starts with a ``<session_context>`` part, which is
context, not a prompt; ``functionResponse`` parts are tool results. The shell tool
(``run_shell_command``) is only offered in yolo mode; without it, RUN_TOOL gets a text reply.
"""

from __future__ import annotations

import json
import re
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

ROUTE = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>\w+)$")
ERRORS = {
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key. (stub injected)"),
    500: ("INTERNAL", "Internal error encountered. (stub injected)"),
}
SHELL_TOOL = "run_shell_command"


def is_context_text(text: str) -> bool:
    return text.lstrip().startswith(("<session_context>", "<system-reminder>"))


def normalise(contents: list[dict[str, Any]]) -> list[Item]:
    items: list[Item] = []
    for content in contents:
        if not isinstance(content, dict):
            continue
        role = content.get("role")
        texts = []
        for part in content.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if "functionResponse" in part:
                response = (part["functionResponse"] or {}).get("response")
                items.append(Item("tool_result", tool_output_text(response)))
            elif "functionCall" in part:
                items.append(Item("tool_call", json.dumps(part["functionCall"])))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                if role == "model":
                    items.append(Item("assistant", part["text"]))
                elif not is_context_text(part["text"]):
                    texts.append(part["text"])
        if role == "user" and texts:
            items.append(Item("prompt", "\n".join(texts)))
    return items


def offered_tools(body: dict[str, Any]) -> set[str]:
    names = set()
    for tool in body.get("tools") or []:
        for decl in (tool or {}).get("functionDeclarations") or []:
            if isinstance(decl, dict) and decl.get("name"):
                names.add(decl["name"])
    return names


def fill_schema(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) Gemini response schema."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = str(schema.get("type", "OBJECT")).upper()
    if kind == "OBJECT":
        props = schema.get("properties") or {}
        return {name: fill_schema(sub or {}) for name, sub in props.items()}
    if kind == "ARRAY":
        return []
    if kind in ("INTEGER", "NUMBER"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "BOOLEAN":
        return False
    return "stub"


USAGE = {"promptTokenCount": 100, "candidatesTokenCount": 6, "totalTokenCount": 106}


class GeminiStub(StubServer):
    name = "gemini"

    def is_model_call(self, rec: Recorded) -> bool:
        match = ROUTE.match(rec.path)
        return bool(rec.method == "POST" and match and match["method"] in (
            "generateContent", "streamGenerateContent"))

    def stream_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(":streamGenerateContent")]

    def handle(self, h: StubHandler, rec: Recorded) -> None:
        match = ROUTE.match(rec.path)
        if rec.method != "POST" or not match or not isinstance(rec.json, dict):
            self.not_found(h, rec)
            return
        body, method, model = rec.json, match["method"], match["model"]
        if method == "countTokens":
            rec.status, rec.reply = 200, "count"
            h.send_json(200, {"totalTokens": 100})
            return
        if method not in ("generateContent", "streamGenerateContent"):
            self.not_found(h, rec)
            return
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if self.force_status:
            reply = Reply("error", status=self.force_status)
        elif method == "generateContent" and isinstance(schema, dict):
            # The model router (complexity score) and other JSON utility calls.
            value = fill_schema(schema)
            if isinstance(value, dict) and "complexity_score" in value:
                value.update(complexity_reasoning="stub: simple", complexity_score=1)
            reply = Reply("text", text=json.dumps(value))
        else:
            items = normalise(body.get("contents") or [])
            reply = self.scripted(items, can_run_shell=SHELL_TOOL in offered_tools(body))
        rec.reply = reply.describe()
        if reply.kind == "error":
            rec.status = reply.status
            status, message = ERRORS.get(reply.status, ("UNKNOWN", "stub error"))
            h.send_json(reply.status,
                        {"error": {"code": reply.status, "message": message, "status": status}})
            return
        rec.status = 200
        if method == "generateContent":
            h.send_json(200, self._response(self._parts(reply), model, final=True))
            return
        h.start_sse()
        parts = self._parts(reply)
        if reply.kind == "text":
            pieces = chunks(reply.text)
            for i, piece in enumerate(pieces):
                h.sse(self._response([{"text": piece}], model, final=i == len(pieces) - 1))
        else:
            h.sse(self._response(parts, model, final=True))

    @staticmethod
    def _parts(reply: Reply) -> list[dict[str, Any]]:
        if reply.kind == "tool_call":
            return [
                {"text": "I'll run a tool. "},
                {"functionCall": {"name": SHELL_TOOL,
                                  "args": {"command": reply.command,
                                           "description": "Run the requested command"}}},
            ]
        return [{"text": reply.text}]

    @staticmethod
    def _response(parts: list[dict[str, Any]], model: str, *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if final:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate], "usageMetadata": USAGE, "modelVersion": model,
                "responseId": uuid.uuid4().hex[:16]}
