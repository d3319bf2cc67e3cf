"""Anthropic-compatible API (``/anthropic/v1``): messages and models.

Code written for the official Anthropic SDKs works by changing only ``base_url``: the
message object, the exact SSE event sequence (``message_start``, ``content_block_start``,
``content_block_delta``..., ``content_block_stop``, ``message_delta``, ``message_stop``;
``ping`` while the backend is silent; ``error`` on a failure mid-stream) and errors
(``{"type": "error", "error": {"type", "message"}, "request_id"}``, 529
``overloaded_error`` when saturated) have Anthropic's shapes. Every response carries
``request-id``; a failed agent run answers with ``x-should-retry: false``.

Runs are ephemeral (no clinvk session); see docs/anthropic.md. The shared request → run →
response path is :mod:`clinvk.server.dialect`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import flask
from flask import Response, request
from flask.views import MethodView

from clinvk.server import compat
from clinvk.server.anthropic.errors import SATURATED_STATUS, error_body
from clinvk.server.anthropic.schemas import (
    ERRORS,
    OK_DOC,
    STREAM_EVENT,
    AnthropicErrorSchema,
    AnthropicMessageSchema,
    AnthropicMessagesRequestSchema,
    AnthropicModelInfoSchema,
    AnthropicModelPageSchema,
)
from clinvk.server.anthropic.stream import PING, EventRenderer
from clinvk.server.anthropic.translate import check_unsupported, conversation, message_object
from clinvk.server.dialect import Dialect, start_run
from clinvk.server.errors import ApiError, ApiException, request_id
from clinvk.server.responses import json_response
from clinvk.server.streaming import SSE_MIMETYPE

REQUEST_ID_HEADER = "request-id"
VERSION_HEADER = "anthropic-version"
_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _check_version() -> None:
    """A malformed ``anthropic-version`` header is refused; an absent one is fine."""
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


dialect = Dialect(
    "anthropic", __name__, url_prefix="/anthropic/v1",
    description="Anthropic-compatible API: point the Anthropic SDKs' base_url at "
                "/anthropic (the SDKs add /v1).",
    request_id_header=REQUEST_ID_HEADER, error_body=error_body, keepalive_frame=PING,
    saturated_status=SATURATED_STATUS, check_headers=_check_version)
blp = dialect.blp


# Every answer of the blueprint carries Anthropic's own request-id header (errors get it
# from the dialect's error headers as well, also when they come from an app-level hook).
@blp.after_request
def _request_id_header(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


@blp.route("/messages")
class Messages(MethodView):
    @blp.arguments(AnthropicMessagesRequestSchema())
    @blp.response(200, AnthropicMessageSchema, description=OK_DOC)
    @blp.alt_response(200, schema=STREAM_EVENT,
                      content_type=SSE_MIMETYPE, success=True, description=OK_DOC)
    @blp.doc(operationId="anthropicCreateMessage", summary="Create a message",
             parameters=[{"in": "header", "name": VERSION_HEADER, "required": False,
                          "schema": {"type": "string", "example": "2023-06-01"}}])
    @compat.document_errors(blp, AnthropicErrorSchema, ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run the conversation's last user message on the backend the model maps to.

        The run is ephemeral (no clinvk session). `max_tokens` is required but not
        enforced; sampling fields are accepted and ignored; tools and image/document
        blocks are refused with 400.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        prompt, system_prompt = conversation(args)
        run = start_run(target, prompt, system_prompt)
        message_id = compat.new_id("msg_")
        render = None
        if args.get("stream"):
            render = EventRenderer(message_id, target.requested, request_id())
        return dialect.respond(run, render, lambda result: message_object(
            message_id, target.requested, result.output, result.token_usage, final=True))


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
    @compat.document_errors(blp, AnthropicErrorSchema, {401: ERRORS[401]})
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
    @compat.document_errors(blp, AnthropicErrorSchema, {401: ERRORS[401],
                                                        404: ERRORS[404]})
    def get(self, model_id: str) -> Response:
        """One model: a listed id or any name the gateway routes (e.g. claude-sonnet-4-5)."""
        return json_response(model_info(compat.find_model(model_id), _created_at()))


flask.Blueprint.add_url_rule(blp, "/v1/models", "models_v1", Models.as_view("models_v1"))
flask.Blueprint.add_url_rule(blp, "/v1/models/<path:model_id>", "model_item_v1",
                             ModelItem.as_view("model_item_v1"))
