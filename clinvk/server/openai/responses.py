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
from collections.abc import Callable
from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields

from clinvk.core.engine import PromptRequest
from clinvk.core.errors import InvalidRequest
from clinvk.core.jobs.responses import ResponseRecord
from clinvk.core.types import RunStatus
from clinvk.server import compat
from clinvk.server.dialect import Run, start_run
from clinvk.server.errors import ApiError, ApiException
from clinvk.server.fields import StrictBoolean
from clinvk.server.openai import background
from clinvk.server.openai.blueprint import blp, dialect
from clinvk.server.openai.schemas import ERRORS, OpenAIErrorSchema
from clinvk.server.openai.shapes import ResponseShape
from clinvk.server.security import identify
from clinvk.server.streaming import SSE_MIMETYPE

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
    background = StrictBoolean(allow_none=True, metadata={
        "description": "Run as a job: answered at once (status queued); poll with GET "
                       "/responses/{id}, cancel with POST /responses/{id}/cancel."})
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
    status = fields.String(metadata={"enum": ["queued", "in_progress", "completed", "failed",
                                             "cancelled"]})
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
    if args.get("background") and args.get("store") is False:
        raise InvalidRequest("background responses are stored: store: false cannot be "
                             "combined with background: true", field="store")


def input_items_of(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The input as the message items ``GET …/input_items`` lists (call after prompt_of)."""
    raw = args["input"]
    turns = [("user", raw)] if isinstance(raw, str) else [
        _item_turn(item, f"input[{i}]") for i, item in enumerate(raw)]
    return [{"id": "msg_" + secrets.token_hex(12), "type": "message", "role": role,
             "status": "completed",
             "content": [{"type": "output_text" if role == "assistant" else "input_text",
                          "text": text}]}
            for role, text in turns]


def session_of(response_id: str) -> str:
    """The clinvk session a stored response ran in (foreground ids carry it; a background
    response's session is its job's)."""
    match = _STORED_ID.match(response_id)
    if match is not None:
        return match.group(1)
    if background.is_background_id(response_id):
        return background.session_of(response_id, identify().principal)
    raise ApiException(ApiError(
        404, "not_found", f"Response with id {response_id!r} not found (responses created "
        "with store: false cannot be continued)", field="previous_response_id"))


# --------------------------------------------------------------------------- output


# --------------------------------------------------------------------------- route


def _prompt_request(args: dict[str, Any], target: compat.ModelTarget) -> PromptRequest:
    """The engine request of this turn (``previous_response_id`` names its session)."""
    prompt, system_prompt = prompt_of(args)
    previous = args.get("previous_response_id")
    session_id = session_of(previous) if previous else None
    store = args.get("store") is not False
    if previous and not store:
        raise InvalidRequest("store: false cannot continue a previous response (its turn "
                             "would be recorded in that session)", field="store")
    return PromptRequest(prompt=prompt, backend=None if session_id else target.backend,
                         model=target.model, system_prompt=system_prompt,
                         session_id=session_id, ephemeral=not store,
                         principal=identify().principal)


def _start(req: PromptRequest, target: compat.ModelTarget) -> tuple[Run, str]:
    """Start the turn; the response id carries the session id of a stored turn."""
    run = start_run(target, req.prompt, req.system_prompt, session_id=req.session_id,
                    ephemeral=req.ephemeral)
    handle = run.handle
    if handle.session_id:
        return run, f"resp_s{handle.session_id}{secrets.token_hex(8)}"
    return run, "resp_e" + secrets.token_hex(24)


def _recorder(shape: ResponseShape, req: PromptRequest, request_fields: dict[str, Any],
              session_id: str | None) -> Callable[[dict[str, Any]], None]:
    """Keeps a finished stored turn so ``GET /responses/{id}`` can answer it later."""
    records = background.records()

    def save(body: dict[str, Any]) -> None:
        records.save(ResponseRecord(id=shape.id, owner=req.principal.owner,
                                    request=request_fields, session_id=session_id,
                                    body=body, created_epoch=shape.created_at))

    return save


@blp.route("/responses")
class Responses(MethodView):
    @blp.arguments(ResponseRequestSchema())
    @blp.response(200, ResponseObjectSchema, description="A Response object, or with "
                  "`stream: true` an SSE stream of `response.*` events.")
    @blp.alt_response(200, schema={"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string", "description": "One response.* event as JSON."}}},
        content_type=SSE_MIMETYPE, success=True, description="With `stream: true`.")
    @blp.doc(operationId="openaiCreateResponse", summary="Create a model response")
    @compat.document_errors(blp, OpenAIErrorSchema, ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run one agent turn; `previous_response_id` continues its backend session.

        Text input (a string or message items) and `instructions` are supported; tools,
        images and files are refused with 400 naming the field. `background: true` queues
        the turn as a job and answers at once with status `queued`.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        req = _prompt_request(args, target)
        request_fields = background.request_fields(args, target, input_items_of(args))
        if args.get("background"):
            return background.submit(req, request_fields, stream=bool(args.get("stream")))
        run, response_id = _start(req, target)
        shape = ResponseShape(response_id, target.requested, args)
        if not req.ephemeral and run.handle.session_id is not None:
            shape.on_finish = _recorder(shape, req, request_fields, run.handle.session_id)
        try:
            return dialect.respond(run, shape if args.get("stream") else None, lambda result:
                                   shape.finish(shape.body("completed", result.output,
                                                           result.token_usage)))
        except ApiException:
            _record_failure(shape, run)
            raise


def _record_failure(shape: ResponseShape, run: Run) -> None:
    """A stored foreground turn that failed is kept as a failed Response object."""
    result = run.handle.result
    if shape.on_finish is None or result is None or result.status == RunStatus.OK:
        return
    shape.on_finish(shape.body("failed", error={
        "code": "server_error", "message": result.error or "the backend run failed"}))
