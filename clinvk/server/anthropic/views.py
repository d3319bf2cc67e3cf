"""Anthropic-compatible API (``/anthropic/v1``, SPEC §7.4): messages and models.

Code written for the official Anthropic SDKs works by changing only ``base_url``: the
message object, the exact SSE event sequence (``message_start``, ``content_block_start``,
``content_block_delta``..., ``content_block_stop``, ``message_delta``, ``message_stop``;
``ping`` while the backend is silent; ``error`` on a failure mid-stream) and errors
(``{"type": "error", "error": {"type", "message"}, "request_id"}``, 529
``overloaded_error`` when saturated) have Anthropic's shapes. Every response carries
``request-id``; a failed agent run answers with ``x-should-retry: false``.

Runs are ephemeral (no clinvk session); see docs/anthropic.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import flask
from flask import Response, request
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.server import compat
from clinvk.server.errors import (
    ApiError,
    ApiException,
    Blueprint,
    check_body_request,
    json_response,
    register_error_format,
    request_id,
)
from clinvk.server.native.schemas import StrictBoolean, StrictInteger, StrictNumber
from clinvk.server.streaming import run_to_completion

URL_PREFIX = "/anthropic/v1"
REQUEST_ID_HEADER = "request-id"
VERSION_HEADER = "anthropic-version"
_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

blp = Blueprint(
    "anthropic", __name__, url_prefix=URL_PREFIX,
    description="Anthropic-compatible API: point the Anthropic SDKs' base_url at "
                "/anthropic (the SDKs add /v1).",
)
blp.before_request(check_body_request)

# --------------------------------------------------------------------------- errors

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
SATURATED_STATUS = 529


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error")


def error_response(err: ApiError) -> Response:
    """Every error under /anthropic/v1, in Anthropic's format (saturation is a 529)."""
    status = SATURATED_STATUS if err.code == "server_saturated" else err.status
    body = {"type": "error",
            "error": {"type": error_type(status), "message": err.message},
            "request_id": request_id()}
    return json_response(body, status, compat.error_headers(err, REQUEST_ID_HEADER))


blp.record_once(lambda state: register_error_format(state.app, URL_PREFIX, error_response))


@blp.before_request
def _check_version() -> None:
    if request.method == "OPTIONS":
        return  # CORS preflights never carry the header (browsers send no custom headers)
    version = request.headers.get(VERSION_HEADER)
    if version is None:
        return  # optional, as with the Go tool: absent means 2023-06-01
    if not _VERSION_RE.fullmatch(version.strip()):
        raise ApiException(ApiError(
            400, "invalid_request",
            f"{VERSION_HEADER}: {version!r} is not a valid version (e.g. 2023-06-01)",
            field=VERSION_HEADER))


@blp.after_request
def _request_id_header(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


# --------------------------------------------------------------------------- schemas


class AnthropicErrorDetailSchema(Schema):
    type = fields.String(metadata={"enum": sorted(set(_ERROR_TYPES.values()) | {"api_error"})})
    message = fields.String()


class AnthropicErrorSchema(Schema):
    """Anthropic's error body."""

    type = fields.String(metadata={"enum": ["error"]})
    error = fields.Nested(AnthropicErrorDetailSchema)
    request_id = fields.String()


class AnthropicInputMessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, error_messages=compat.REQUIRED,
                         validate=validate.OneOf(("user", "assistant")))
    content = fields.Raw(required=True, error_messages=compat.REQUIRED, metadata={
        "description": "A string or an array of text blocks (thinking blocks of assistant "
                       "turns are skipped; image, document and tool blocks are refused)."})


class AnthropicToolChoiceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String()


class AnthropicMessagesRequestSchema(Schema):
    """POST /anthropic/v1/messages. Fields not listed are accepted and ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=compat.not_blank, error_messages=compat.REQUIRED,
                          metadata={"description": "claude, codex, gemini, backend/model, an "
                                    "alias (fast, balanced, best) or a vendor model name "
                                    "(claude-*, gpt-*, o*, gemini-*)."})
    max_tokens = StrictInteger(required=True, error_messages=compat.REQUIRED,
                               validate=validate.Range(min=1), metadata={
                                   "description": "Required (as by Anthropic); not enforced: "
                                                  "the CLIs have no output limit flag."})
    messages = fields.List(fields.Nested(AnthropicInputMessageSchema), required=True,
                           error_messages=compat.REQUIRED, validate=validate.Length(min=1))
    system = fields.Raw(allow_none=True, metadata={
        "description": "The system prompt: a string or an array of text blocks."})
    stream = StrictBoolean(allow_none=True, metadata={"description": "Answer with SSE events."})
    stop_sequences = fields.List(fields.String(), allow_none=True, metadata={
        "description": "Accepted and ignored."})
    temperature = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_p = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_k = StrictInteger(allow_none=True, metadata={"description": "Accepted and ignored."})
    metadata = fields.Dict(allow_none=True, metadata={"description": "Accepted and ignored."})
    thinking = fields.Raw(allow_none=True, metadata={"description": "Accepted and ignored."})
    tools = fields.List(fields.Raw(), allow_none=True, metadata={
        "description": "Refused when non-empty: the agents use their own tools."})
    tool_choice = fields.Nested(AnthropicToolChoiceSchema, allow_none=True, metadata={
        "description": "Only auto/none (or absent) are accepted."})


class AnthropicTextBlockSchema(Schema):
    type = fields.String(metadata={"enum": ["text"]})
    text = fields.String()


class AnthropicUsageSchema(Schema):
    input_tokens = fields.Integer(metadata={"description": "Input not read from cache."})
    output_tokens = fields.Integer()
    cache_creation_input_tokens = fields.Integer()
    cache_read_input_tokens = fields.Integer()


class AnthropicMessageSchema(Schema):
    id = fields.String(metadata={"description": "msg_<random>, unique."})
    type = fields.String(metadata={"enum": ["message"]})
    role = fields.String(metadata={"enum": ["assistant"]})
    model = fields.String(metadata={"description": "The requested model."})
    content = fields.List(fields.Nested(AnthropicTextBlockSchema))
    stop_reason = fields.String(metadata={"enum": ["end_turn"]})
    stop_sequence = fields.String(allow_none=True)
    usage = fields.Nested(AnthropicUsageSchema)


class AnthropicModelInfoSchema(Schema):
    type = fields.String(metadata={"enum": ["model"]})
    id = fields.String()
    display_name = fields.String()
    created_at = fields.String(metadata={"description": "RFC 3339."})


class AnthropicModelPageSchema(Schema):
    data = fields.List(fields.Nested(AnthropicModelInfoSchema))
    has_more = fields.Boolean()
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)


_ERRORS = {
    400: "Invalid request (missing max_tokens, malformed anthropic-version, tools, images...).",
    401: "Missing or wrong API key.",
    404: "Unknown model (`not_found_error`).",
    413: "Request body too large.",
    429: "Rate limited; Retry-After says when to retry.",
    502: "The agent ran and failed; x-should-retry: false.",
    503: "Backend not installed; x-should-retry: false.",
    504: "The agent timed out (`timeout_error`); x-should-retry: false.",
    529: "All run slots busy (`overloaded_error`); Retry-After says when to retry.",
}
_OK_DOC = ("A `message` object (application/json), or with `stream: true` an SSE stream of "
           "events (text/event-stream).")
_STREAM_DOC = (
    "With `stream: true`: `text/event-stream` with the events message_start, "
    "content_block_start, content_block_delta (text_delta)..., content_block_stop, "
    "message_delta (stop_reason, usage), message_stop; `ping` events while the backend is "
    "silent; a failure after the stream started is an `error` event that ends the stream.")
# The schema of one SSE event (as OpenAPI 3.2 and schemathesis read `schema` under
# text/event-stream: one event object per item), not of the whole body.
_STREAM_EVENT = {
    "type": "object", "required": ["event", "data"], "description": _STREAM_DOC,
    "properties": {
        "event": {"type": "string", "enum": [
            "message_start", "content_block_start", "content_block_delta",
            "content_block_stop", "message_delta", "message_stop", "ping", "error"]},
        "data": {"type": "string", "description": "The event's JSON object; its `type` is "
                 "the event name."},
    },
}


# --------------------------------------------------------------------------- conversion


def _blocks_text(content: Any, where: str, role: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content blocks",
                             field=where)
    texts = []
    for j, block in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(block, dict):
            raise InvalidRequest(f"{here} must be a content block object", field=here)
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"{here}.text must be a string", field=f"{here}.text")
            texts.append(text)
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning echoed back by the client: not part of the answer
        elif kind in ("image", "document", "search_result", "container_upload"):
            raise InvalidRequest(f"{here}: {kind} blocks are not supported (the backends take "
                                 "text prompts only)", field=here)
        elif isinstance(kind, str) and ("tool" in kind):
            raise InvalidRequest(f"{here}: {kind} blocks are not supported (tools are not "
                                 "supported)", field=here)
        else:
            raise InvalidRequest(f"{here}: content blocks of type {kind!r} are not supported; "
                                 "only text blocks are", field=here)
    return "\n".join(texts)


def conversation(args: dict[str, Any]) -> tuple[str, str | None]:
    """The request -> (prompt, system prompt)."""
    system = args.get("system")
    system_text = None
    if system is not None:
        if isinstance(system, list) and any(
                isinstance(b, dict) and b.get("type") != "text" for b in system):
            raise InvalidRequest("system must be a string or an array of text blocks",
                                 field="system")
        system_text = compat.join_system([_blocks_text(system, "system", "system")])
    turns = [compat.Turn(m["role"], _blocks_text(m["content"], f"messages[{i}].content",
                                                 m["role"]), f"messages[{i}].content")
             for i, m in enumerate(args["messages"])]
    return compat.render_prompt(turns), system_text


def check_unsupported(args: dict[str, Any]) -> None:
    if args.get("tools"):
        raise InvalidRequest("tools: not supported; the agents use their own tools and "
                             "cannot call yours", field="tools")
    choice = (args.get("tool_choice") or {}).get("type")
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(f"tool_choice: {choice!r} is not supported (no tools)",
                             field="tool_choice")


def usage_body(usage: TokenUsage) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens``; ours include them."""
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def message_object(message_id: str, model: str, text: str | None, usage: TokenUsage,
                   *, final: bool) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text is not None else [],
        "stop_reason": "end_turn" if final else None,
        "stop_sequence": None,
        "usage": usage_body(usage),
    }


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
            kind = "timeout_error" if event.content.get("code") == "timeout" else "api_error"
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


# --------------------------------------------------------------------------- routes


@blp.route("/messages")
class Messages(MethodView):
    @blp.arguments(AnthropicMessagesRequestSchema())
    @blp.response(200, AnthropicMessageSchema, description=_OK_DOC)
    @blp.alt_response(200, schema=_STREAM_EVENT,
                      content_type=compat.SSE_MIMETYPE, success=True, description=_OK_DOC)
    @blp.doc(operationId="anthropicCreateMessage", summary="Create a message",
             parameters=[{"in": "header", "name": VERSION_HEADER, "required": False,
                          "schema": {"type": "string", "example": "2023-06-01"}}])
    @compat.document_errors(blp, AnthropicErrorSchema, _ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run the conversation's last user message on the backend the model maps to.

        The run is ephemeral (no clinvk session). `max_tokens` is required but not
        enforced; sampling fields are accepted and ignored; tools and image/document
        blocks are refused with 400.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        prompt, system_prompt = conversation(args)
        run = compat.start_run(target, prompt, system_prompt)
        message_id = compat.new_id("msg_")
        if args.get("stream"):
            render = EventRenderer(message_id, target.requested, request_id())
            return compat.sse_response(run, render.prelude(), render, PING)
        run_to_completion(run.handle, request.environ)
        result = compat.require_ok(run.handle.result)
        body = message_object(message_id, target.requested, result.output,
                              result.token_usage, final=True)
        return json_response(body, headers=compat.run_headers(run))


# The Anthropic SDKs put /v1 in every path, so base_url ".../anthropic" is the natural one;
# the seed documents base_url ".../anthropic/v1", which makes them call /anthropic/v1/v1/...
# Those paths answer too (undocumented in OpenAPI, same views).
flask.Blueprint.add_url_rule(blp, "/v1/messages", "messages_v1",
                             Messages.as_view("messages_v1"))


def model_info(entry: compat.ModelEntry, created: str) -> dict[str, Any]:
    return {"type": "model", "id": entry.id, "display_name": entry.description,
            "created_at": created}


def _created_at() -> str:
    moment = datetime.fromtimestamp(compat.server_started_epoch(), UTC)
    return moment.isoformat().replace("+00:00", "Z")


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, AnthropicModelPageSchema)
    @blp.doc(operationId="anthropicListModels", summary="List models")
    @compat.document_errors(blp, AnthropicErrorSchema, {401: _ERRORS[401]})
    def get(self) -> Response:
        """Backends (their default model), `backend/alias` for every alias, bare aliases.

        One page holds every model (`has_more` is false); paging parameters are ignored.
        """
        created = _created_at()
        data = [model_info(e, created) for e in compat.model_catalog()]
        return json_response({"data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})


@blp.route("/models/<path:model_id>")
class ModelItem(MethodView):
    @blp.response(200, AnthropicModelInfoSchema)
    @blp.doc(operationId="anthropicGetModel", summary="Get a model")
    @compat.document_errors(blp, AnthropicErrorSchema, {401: _ERRORS[401],
                                                        404: _ERRORS[404]})
    def get(self, model_id: str) -> Response:
        """One model: a listed id or any name the gateway routes (e.g. claude-sonnet-4-5)."""
        return json_response(model_info(compat.find_model(model_id), _created_at()))


flask.Blueprint.add_url_rule(blp, "/v1/models", "models_v1", Models.as_view("models_v1"))
flask.Blueprint.add_url_rule(blp, "/v1/models/<path:model_id>", "model_item_v1",
                             ModelItem.as_view("model_item_v1"))
