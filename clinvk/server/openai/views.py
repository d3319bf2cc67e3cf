"""OpenAI-compatible API (``/openai/v1``, SPEC §7.3): models and chat completions.

Code written for the official OpenAI SDKs works by changing only ``base_url``: bodies,
SSE chunks and errors (``{"error": {"message", "type", "param", "code"}}``) have OpenAI's
shapes, every response carries ``x-request-id``, and a failed agent run answers with
``x-should-retry: false`` so the SDKs do not silently run the agent again.

Runs are ephemeral (no clinvk session); see docs/openai.md for the model mapping, the
transcript format of multi-turn conversations, and what is ignored or refused.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.server import compat
from clinvk.server.errors import (
    ApiError,
    Blueprint,
    check_body_request,
    json_response,
    register_error_format,
)
from clinvk.server.native.schemas import StrictBoolean, StrictInteger, StrictNumber
from clinvk.server.streaming import run_to_completion

URL_PREFIX = "/openai/v1"
REQUEST_ID_HEADER = "x-request-id"

blp = Blueprint(
    "openai", __name__, url_prefix=URL_PREFIX,
    description="OpenAI-compatible API: point the OpenAI SDKs' base_url at /openai/v1.",
)
blp.before_request(check_body_request)

# --------------------------------------------------------------------------- errors

# HTTP status -> OpenAI error `type`.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "requests",
}
# Our machine code -> the code OpenAI uses for the same situation.
_ERROR_CODES = {
    "unauthorized": "invalid_api_key",
    "rate_limited": "rate_limit_exceeded",
    "invalid_request": None,
}


def error_body(err: ApiError) -> dict[str, Any]:
    param = err.field if err.field not in (None, "body") else None
    return {"error": {
        "message": err.message,
        "type": _ERROR_TYPES.get(err.status, "server_error"),
        "param": param,
        "code": _ERROR_CODES.get(err.code, err.code),
    }}


def error_response(err: ApiError) -> Response:
    """Every error under /openai/v1, in OpenAI's format."""
    return json_response(error_body(err), err.status,
                         compat.error_headers(err, REQUEST_ID_HEADER))


blp.record_once(lambda state: register_error_format(state.app, URL_PREFIX, error_response))


# --------------------------------------------------------------------------- schemas


class OpenAIErrorDetailSchema(Schema):
    message = fields.String(metadata={"description": "Human-readable explanation."})
    type = fields.String(metadata={"description": "invalid_request_error, requests (429), "
                                   "permission_error or server_error."})
    param = fields.String(allow_none=True, metadata={"description": "The offending request "
                                                     "parameter, e.g. messages[0].content."})
    code = fields.String(allow_none=True, metadata={"description": "Machine code, e.g. "
                                                    "model_not_found, backend_failed."})


class OpenAIErrorSchema(Schema):
    """OpenAI's error body."""

    error = fields.Nested(OpenAIErrorDetailSchema)


class OpenAIStreamOptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    include_usage = StrictBoolean(allow_none=True, metadata={
        "description": "Send a last chunk with `usage` (and `usage: null` on the others)."})


class OpenAIChatMessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, error_messages=compat.REQUIRED, validate=validate.OneOf(
        ("system", "developer", "user", "assistant", "tool", "function")),
        metadata={"description": "system/developer text becomes the system prompt; tool and "
                               "function messages are refused (no tools)."})
    content = fields.Raw(allow_none=True, metadata={
        "description": "A string or an array of text parts; image, audio and file parts "
                       "are refused."})
    name = fields.String(allow_none=True, metadata={"description": "Ignored."})
    tool_calls = fields.Raw(allow_none=True, metadata={
        "description": "Refused when non-empty (tools are not supported)."})


def _sampling(description: str = "Accepted and ignored.") -> StrictNumber:
    return StrictNumber(allow_none=True, metadata={"description": description})


class OpenAIChatCompletionRequestSchema(Schema):
    """POST /openai/v1/chat/completions. Fields not listed are accepted and ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=compat.not_blank, error_messages=compat.REQUIRED,
                          metadata={"description": "claude, codex, gemini, backend/model, an "
                                    "alias (fast, balanced, best) or a vendor model name "
                                    "(claude-*, gpt-*, o*, gemini-*)."})
    messages = fields.List(fields.Nested(OpenAIChatMessageSchema), required=True,
                           error_messages=compat.REQUIRED, validate=validate.Length(min=1),
                           metadata={"description": "The conversation; earlier turns are "
                                     "rendered as a transcript in front of the last user "
                                     "message."})
    stream = StrictBoolean(allow_none=True, metadata={"description": "Answer with SSE chunks."})
    stream_options = fields.Nested(OpenAIStreamOptionsSchema, allow_none=True)
    n = StrictInteger(allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Only 1 is supported."})
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Accepted and ignored (the CLIs have no output limit flag)."})
    max_completion_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1),
                                          metadata={"description": "Accepted and ignored."})
    temperature = _sampling()
    top_p = _sampling()
    presence_penalty = _sampling()
    frequency_penalty = _sampling()
    seed = StrictInteger(allow_none=True, metadata={"description": "Accepted and ignored."})
    stop = fields.Raw(allow_none=True, metadata={"description": "Accepted and ignored."})
    user = fields.String(allow_none=True, metadata={"description": "Accepted and ignored."})
    tools = fields.List(fields.Raw(), allow_none=True, metadata={
        "description": "Refused when non-empty: the agents use their own tools."})
    functions = fields.List(fields.Raw(), allow_none=True, metadata={
        "description": "Refused when non-empty."})
    tool_choice = fields.Raw(allow_none=True, metadata={
        "description": "Only none/auto (or absent) are accepted."})
    response_format = fields.Raw(allow_none=True, metadata={
        "description": "Only {\"type\": \"text\"} (or absent) is accepted."})


class OpenAIChatMessageOutSchema(Schema):
    role = fields.String(metadata={"enum": ["assistant"]})
    content = fields.String()
    refusal = fields.String(allow_none=True)


class OpenAIChoiceSchema(Schema):
    index = fields.Integer()
    message = fields.Nested(OpenAIChatMessageOutSchema)
    logprobs = fields.Raw(allow_none=True)
    finish_reason = fields.String(metadata={"enum": ["stop"]})


class OpenAIPromptTokensDetailsSchema(Schema):
    cached_tokens = fields.Integer()


class OpenAICompletionTokensDetailsSchema(Schema):
    reasoning_tokens = fields.Integer()


class OpenAIUsageSchema(Schema):
    prompt_tokens = fields.Integer(metadata={"description": "All input, cached included."})
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    prompt_tokens_details = fields.Nested(OpenAIPromptTokensDetailsSchema)
    completion_tokens_details = fields.Nested(OpenAICompletionTokensDetailsSchema)


class OpenAIChatCompletionSchema(Schema):
    id = fields.String(metadata={"description": "chatcmpl-<random>, unique."})
    object = fields.String(metadata={"enum": ["chat.completion"]})
    created = fields.Integer()
    model = fields.String(metadata={"description": "The requested model."})
    choices = fields.List(fields.Nested(OpenAIChoiceSchema))
    usage = fields.Nested(OpenAIUsageSchema)
    system_fingerprint = fields.String(allow_none=True)


class OpenAIModelSchema(Schema):
    id = fields.String()
    object = fields.String(metadata={"enum": ["model"]})
    created = fields.Integer()
    owned_by = fields.String(metadata={"description": "anthropic, openai or google."})


class OpenAIModelListSchema(Schema):
    object = fields.String(metadata={"enum": ["list"]})
    data = fields.List(fields.Nested(OpenAIModelSchema))


_ERRORS = {
    400: "Invalid request; `param` names the parameter (e.g. n, tools, messages[1].content).",
    401: "Missing or wrong API key.",
    404: "Unknown model (`code: model_not_found`).",
    413: "Request body too large.",
    429: "Rate limited; Retry-After says when to retry.",
    502: "The agent ran and failed (`code: backend_failed`); x-should-retry: false.",
    503: "Server saturated (Retry-After) or backend not installed (x-should-retry: false).",
    504: "The agent timed out (`code: backend_timeout`); x-should-retry: false.",
}
_OK_DOC = ("A `chat.completion` object (application/json), or with `stream: true` an SSE "
           "stream of chunks (text/event-stream).")
_STREAM_DOC = (
    "With `stream: true`: `text/event-stream` of `chat.completion.chunk` objects (`data: "
    "{...}` lines), the role in the first chunk, `finish_reason` in the last, a usage chunk "
    "with `stream_options.include_usage`, then `data: [DONE]`. `: keep-alive` comments keep "
    "a silent stream open; a failure after the stream started is a `data: {\"error\": "
    "{...}}` chunk followed by `[DONE]`.")
# The schema of one SSE event (as OpenAPI 3.2 and schemathesis read `schema` under
# text/event-stream: one event object per item), not of the whole body.
_STREAM_EVENT = {
    "type": "object", "required": ["data"], "description": _STREAM_DOC,
    "properties": {"data": {"type": "string", "description": "A `chat.completion.chunk` "
                            "object as JSON, an `{\"error\": {...}}` object as JSON, or "
                            "`[DONE]` (the last event)."}},
}


# --------------------------------------------------------------------------- conversion


def _content_text(content: Any, where: str, role: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts",
                             field=where)
    texts = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{here} must be a content part object", field=here)
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequest(f"{here}.{kind} must be a string", field=f"{here}.{kind}")
            texts.append(text)
        elif kind in ("image_url", "input_image", "image"):
            raise InvalidRequest(f"{here}: image content parts are not supported (the "
                                 "backends take text prompts only)", field=here)
        else:
            raise InvalidRequest(f"{here}: content parts of type {kind!r} are not supported; "
                                 "only text parts are", field=here)
    return "\n".join(texts)


def conversation(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """``messages`` -> (prompt, system prompt)."""
    system: list[str] = []
    turns: list[compat.Turn] = []
    for i, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{i}]"
        if role in ("tool", "function"):
            raise InvalidRequest(f"{where}: {role} messages are not supported (tools are not "
                                 "supported)", field=f"{where}.role")
        if message.get("tool_calls"):
            raise InvalidRequest(f"{where}.tool_calls is not supported (tools are not "
                                 "supported)", field=f"{where}.tool_calls")
        text = _content_text(message.get("content"), f"{where}.content", role)
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(compat.Turn(role, text, f"{where}.content"))
    return compat.render_prompt(turns), compat.join_system(system)


def check_unsupported(args: dict[str, Any]) -> None:
    """Parameters whose meaning cannot be honoured are refused, naming the parameter."""
    if (args.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 is not supported: each request runs the agent once",
                             field="n")
    for name in ("tools", "functions"):
        if args.get(name):
            raise InvalidRequest(f"{name} is not supported: the agents use their own tools "
                                 "and cannot call yours", field=name)
    for name in ("tool_choice", "function_call"):
        choice = args.get(name)
        if choice not in (None, "none", "auto"):
            raise InvalidRequest(f"{name} {choice!r} is not supported (no tools)", field=name)
    response_format = args.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind != "text":
            raise InvalidRequest(f"response_format {kind or response_format!r} is not "
                                 "supported; only text", field="response_format")


def usage_body(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


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
            code = {"timeout": "backend_timeout", "cancelled": "run_cancelled",
                    "backend_error": "backend_failed"}.get(content.get("code"),
                                                           content.get("code"))
            error = {"message": content.get("message") or "the backend run failed",
                     "type": "server_error", "param": None, "code": code}
            return [compat.sse({"error": error}), compat.sse("[DONE]")]
        text = self.text.feed(event)
        if text is None:
            return None
        return self.chunk({"content": text})


# --------------------------------------------------------------------------- routes


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.arguments(OpenAIChatCompletionRequestSchema())
    @blp.response(200, OpenAIChatCompletionSchema, description=_OK_DOC)
    @blp.alt_response(200, schema=_STREAM_EVENT,
                      content_type=compat.SSE_MIMETYPE, success=True, description=_OK_DOC)
    @blp.doc(operationId="openaiChatCompletions", summary="Create a chat completion")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run the conversation's last user message on the backend the model maps to.

        The run is ephemeral (no clinvk session). Sampling parameters are accepted and
        ignored; `n > 1`, tools/functions, non-text response formats and image/audio/file
        content parts are refused with 400 naming the parameter.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        prompt, system_prompt = conversation(args["messages"])
        run = compat.start_run(target, prompt, system_prompt)
        completion_id = compat.new_id("chatcmpl-")
        created = int(time.time())
        if args.get("stream"):
            include_usage = bool((args.get("stream_options") or {}).get("include_usage"))
            render = ChunkRenderer(completion_id, created, target.requested, include_usage)
            return compat.sse_response(run, render.prelude(), render, compat.KEEPALIVE_COMMENT)
        run_to_completion(run.handle, request.environ)
        result = compat.require_ok(run.handle.result)
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": target.requested,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": result.output, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": usage_body(result.token_usage),
            "system_fingerprint": None,
        }
        return json_response(body, headers=compat.run_headers(run))


def model_object(entry: compat.ModelEntry, created: int) -> dict[str, Any]:
    return {"id": entry.id, "object": "model", "created": created, "owned_by": entry.vendor}


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, OpenAIModelListSchema)
    @blp.doc(operationId="openaiListModels", summary="List models")
    @compat.document_errors(blp, OpenAIErrorSchema, {401: _ERRORS[401]})
    def get(self) -> Response:
        """Backends (their default model), `backend/alias` for every alias, bare aliases."""
        created = compat.server_started_epoch()
        return json_response({"object": "list", "data": [
            model_object(e, created) for e in compat.model_catalog()]})


@blp.route("/models/<path:model_id>")
class ModelItem(MethodView):
    @blp.response(200, OpenAIModelSchema)
    @blp.doc(operationId="openaiGetModel", summary="Get a model")
    @compat.document_errors(blp, OpenAIErrorSchema, {401: _ERRORS[401], 404: _ERRORS[404]})
    def get(self, model_id: str) -> Response:
        """One model: a listed id or any name the gateway routes (e.g. gpt-5.5)."""
        return json_response(model_object(compat.find_model(model_id),
                                          compat.server_started_epoch()))


# The Responses API lives in its own module and registers its routes on this blueprint.
from clinvk.server.openai import responses as _responses  # noqa: E402,F401
