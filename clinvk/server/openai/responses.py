"""OpenAI Responses API (``POST /openai/v1/responses``) on the same engine as chat completions.

A response is one agent turn. Stored responses (``store`` true, the default) run in a
clinvk session, and the response id carries that session's id, so ``previous_response_id``
continues the same backend session (the CLI's own resume) without a mapping table; the
engine's session ownership decides who may continue it. ``store: false`` runs ephemerally
and its id cannot be continued. Built-in tools, function tools and file/image inputs are
refused with 400 naming the field. See docs/openai.md ("Responses API").
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields

from clinvk.core.engine import PromptRequest
from clinvk.core.errors import InvalidRequest
from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.server import compat, current_gateway
from clinvk.server.errors import ApiError, ApiException, json_response
from clinvk.server.native.schemas import StrictBoolean
from clinvk.server.openai.views import _ERRORS, OpenAIErrorSchema, blp
from clinvk.server.security import identify
from clinvk.server.streaming import run_to_completion

# resp_s<32-hex session id><16-hex turn> for stored responses, resp_e<48-hex> otherwise.
_STORED_ID = re.compile(r"^resp_s([0-9a-f]{32})[0-9a-f]{16}$")
_TEXT_PARTS = ("input_text", "output_text", "text")
_FILE_PARTS = ("input_image", "input_file", "input_audio", "image_url", "image")


class ResponseRequestSchema(Schema):
    """POST /openai/v1/responses. Fields not listed are accepted and ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=compat.not_blank,
                          error_messages=compat.REQUIRED, metadata={
                              "description": "As for chat completions: a backend, "
                                             "backend/model, an alias or a vendor model name."})
    input = fields.Raw(required=True, error_messages=compat.REQUIRED, metadata={
        "description": "A string, or a list of message items (role + string or input_text "
                       "parts). Images, files and tool items are refused."})
    instructions = fields.String(allow_none=True, metadata={
        "description": "The system prompt of this turn."})
    previous_response_id = fields.String(allow_none=True, metadata={
        "description": "Continue the backend session of a stored response."})
    store = StrictBoolean(allow_none=True, metadata={
        "description": "Default true: the turn runs in a clinvk session and can be continued."})
    stream = StrictBoolean(allow_none=True, metadata={"description": "Answer with SSE events."})
    background = StrictBoolean(allow_none=True, metadata={"description": "Not supported yet."})
    tools = fields.List(fields.Raw(), allow_none=True, metadata={
        "description": "Refused when non-empty: the agents use their own tools."})
    tool_choice = fields.Raw(allow_none=True, metadata={
        "description": "Only none/auto (or absent)."})
    metadata = fields.Dict(allow_none=True, metadata={"description": "Echoed back."})


class ResponseObjectSchema(Schema):
    """The Response object (the fields clients read; see OpenAI's reference for the rest)."""

    id = fields.String()
    object = fields.String(metadata={"enum": ["response"]})
    created_at = fields.Integer()
    status = fields.String(metadata={"enum": ["completed", "failed", "in_progress"]})
    model = fields.String()
    output = fields.List(fields.Dict())
    usage = fields.Raw(allow_none=True, metadata={
        "description": "input_tokens, output_tokens, total_tokens (+ details)."})
    error = fields.Raw(allow_none=True, metadata={"description": "null, or {code, message}."})
    # Present for the SDK's Response model; fixed values (no tools, no sampling control).
    incomplete_details = fields.Raw(allow_none=True)
    instructions = fields.Raw(allow_none=True)
    metadata = fields.Raw(allow_none=True)
    parallel_tool_calls = fields.Raw(allow_none=True)
    tool_choice = fields.Raw(allow_none=True)
    tools = fields.Raw(allow_none=True)
    temperature = fields.Raw(allow_none=True)
    top_p = fields.Raw(allow_none=True)
    text = fields.Raw(allow_none=True)
    previous_response_id = fields.Raw(allow_none=True)
    store = fields.Raw(allow_none=True)
    background = fields.Raw(allow_none=True)


# --------------------------------------------------------------------------- input


def _part_text(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where} must be a content part object", field=where)
    kind = part.get("type")
    if kind in _FILE_PARTS:
        raise InvalidRequest(f"{where}: {kind} content is not supported (the backends take "
                             "text prompts only)", field=where)
    if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
        raise InvalidRequest(f"{where}: only input_text parts with a string text are "
                             "supported", field=where)
    return str(part["text"])


def _item_turn(item: Any, where: str) -> tuple[str, str]:
    """One input item -> (role, text)."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be a message object", field=where)
    kind = item.get("type", "message")
    if kind != "message":
        raise InvalidRequest(f"{where}: input items of type {kind!r} are not supported; "
                             "only messages (tools are not supported)", field=f"{where}.type")
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"{where}.role must be user, assistant, system or developer",
                             field=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return role, content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list of parts",
                             field=f"{where}.content")
    texts = [_part_text(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    return role, "\n".join(texts)


def prompt_of(args: dict[str, Any]) -> tuple[str, str | None]:
    """``input`` + ``instructions`` -> (prompt, system prompt)."""
    raw = args["input"]
    system = [args["instructions"]] if args.get("instructions") else []
    if isinstance(raw, str):
        turns = [compat.Turn("user", raw, "input")]
    elif isinstance(raw, list) and raw:
        turns = []
        for i, item in enumerate(raw):
            role, text = _item_turn(item, f"input[{i}]")
            if role in ("system", "developer"):
                system.append(text)
            else:
                turns.append(compat.Turn(role, text, f"input[{i}].content"))
    else:
        raise InvalidRequest("input must be a string or a non-empty list of messages",
                             field="input")
    return compat.render_prompt(turns), compat.join_system(system)


def check_unsupported(args: dict[str, Any]) -> None:
    for tool in args.get("tools") or []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(f"tools: {kind or 'tool'!r} is not supported; the agents use "
                             "their own tools and cannot call yours", field="tools")
    choice = args.get("tool_choice")
    if choice not in (None, "none", "auto"):
        raise InvalidRequest(f"tool_choice {choice!r} is not supported (no tools)",
                             field="tool_choice")
    if args.get("background"):
        raise InvalidRequest("background is not supported yet; run in the foreground or use "
                             "the native jobs API", field="background")


def session_of(response_id: str) -> str:
    match = _STORED_ID.match(response_id)
    if match is None:
        raise ApiException(ApiError(
            404, "not_found", f"Response with id {response_id!r} not found (responses created "
            "with store: false cannot be continued)", field="previous_response_id"))
    return match.group(1)


# --------------------------------------------------------------------------- output


class ResponseShape:
    """Builds the Response object and its stream events for one turn."""

    def __init__(self, response_id: str, model: str, args: dict[str, Any]) -> None:
        self.id = response_id
        self.item_id = "msg_" + secrets.token_hex(12)
        self.model = model
        self.args = args
        self.created_at = int(time.time())
        self.sequence = 0
        self.text: list[str] = []
        self.joiner = compat.TextJoiner()

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
            "store": self.args.get("store") is not False, "background": False,
            "usage": None if usage is None else usage_body(usage),
        }

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
                self.event("response.completed", response=self.body("completed", text, usage)),
            ]
        if event.type == ERROR:
            error = {"code": "server_error",
                     "message": event.content.get("message") or "the backend run failed"}
            return self.event("response.failed", response=self.body("failed", error=error))
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


# --------------------------------------------------------------------------- route


def _start(args: dict[str, Any], target: compat.ModelTarget) -> tuple[compat.Run, str]:
    """Start the turn; the response id carries the session id of a stored turn."""
    prompt, system_prompt = prompt_of(args)
    previous = args.get("previous_response_id")
    session_id = session_of(previous) if previous else None
    store = args.get("store") is not False
    if previous and not store:
        raise InvalidRequest("store: false cannot continue a previous response (its turn "
                             "would be recorded in that session)", field="store")
    gw = current_gateway()
    req = PromptRequest(prompt=prompt, backend=None if session_id else target.backend,
                        model=target.model, system_prompt=system_prompt,
                        session_id=session_id, ephemeral=not store,
                        principal=identify().principal)
    handle = gw.engine.start(gw.engine.prepare(req))
    run = compat.Run(target, handle)
    if handle.session_id:
        return run, f"resp_s{handle.session_id}{secrets.token_hex(8)}"
    return run, "resp_e" + secrets.token_hex(24)


@blp.route("/responses")
class Responses(MethodView):
    @blp.arguments(ResponseRequestSchema())
    @blp.response(200, ResponseObjectSchema, description="A Response object, or with "
                  "`stream: true` an SSE stream of `response.*` events.")
    @blp.alt_response(200, schema={"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string", "description": "One response.* event as JSON."}}},
        content_type=compat.SSE_MIMETYPE, success=True, description="With `stream: true`.")
    @blp.doc(operationId="openaiCreateResponse", summary="Create a model response")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run one agent turn; `previous_response_id` continues its backend session.

        Text input (a string or message items) and `instructions` are supported; tools,
        images, files and `background` are refused with 400 naming the field.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        run, response_id = _start(args, target)
        shape = ResponseShape(response_id, target.requested, args)
        if args.get("stream"):
            return compat.sse_response(run, shape.prelude(), shape, compat.KEEPALIVE_COMMENT)
        run_to_completion(run.handle, request.environ)
        result = compat.require_ok(run.handle.result)
        body = shape.body("completed", result.output, result.token_usage)
        return json_response(body, headers=compat.run_headers(run))
