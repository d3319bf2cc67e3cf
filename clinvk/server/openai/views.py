"""OpenAI-compatible API (``/openai/v1``): models and chat completions.

Code written for the official OpenAI SDKs works by changing only ``base_url``: bodies,
SSE chunks and errors (``{"error": {"message", "type", "param", "code"}}``) have OpenAI's
shapes, every response carries ``x-request-id``, and a failed agent run answers with
``x-should-retry: false`` so the SDKs do not silently run the agent again.

Chat completions run ephemerally (no clinvk session); see docs/openai.md for the model
mapping, the transcript format of multi-turn conversations, and what is ignored or refused.
The shared request → run → response path is :mod:`clinvk.server.dialect`.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response
from flask.views import MethodView

from clinvk.server import compat
from clinvk.server.dialect import start_run
from clinvk.server.openai.blueprint import blp, dialect
from clinvk.server.openai.schemas import (
    ERRORS,
    OK_DOC,
    STREAM_EVENT,
    OpenAIChatCompletionRequestSchema,
    OpenAIChatCompletionSchema,
    OpenAIErrorSchema,
    OpenAIModelListSchema,
    OpenAIModelSchema,
)
from clinvk.server.openai.stream import ChunkRenderer
from clinvk.server.openai.translate import check_unsupported, conversation, usage_body
from clinvk.server.responses import json_response
from clinvk.server.streaming import SSE_MIMETYPE


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.arguments(OpenAIChatCompletionRequestSchema())
    @blp.response(200, OpenAIChatCompletionSchema, description=OK_DOC)
    @blp.alt_response(200, schema=STREAM_EVENT,
                      content_type=SSE_MIMETYPE, success=True, description=OK_DOC)
    @blp.doc(operationId="openaiChatCompletions", summary="Create a chat completion")
    @compat.document_errors(blp, OpenAIErrorSchema, ERRORS)
    def post(self, args: dict[str, Any]) -> Response:
        """Run the conversation's last user message on the backend the model maps to.

        The run is ephemeral (no clinvk session). Sampling parameters are accepted and
        ignored; `n > 1`, tools/functions, non-text response formats and image/audio/file
        content parts are refused with 400 naming the parameter.
        """
        check_unsupported(args)
        target = compat.resolve_model(args["model"])
        prompt, system_prompt = conversation(args["messages"])
        run = start_run(target, prompt, system_prompt)
        completion_id = compat.new_id("chatcmpl-")
        created = int(time.time())
        render = None
        if args.get("stream"):
            include_usage = bool((args.get("stream_options") or {}).get("include_usage"))
            render = ChunkRenderer(completion_id, created, target.requested, include_usage)
        return dialect.respond(run, render, lambda result: {
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
        })


def model_object(entry: compat.ModelEntry, created: int) -> dict[str, Any]:
    return {"id": entry.id, "object": "model", "created": created, "owned_by": entry.vendor}


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, OpenAIModelListSchema)
    @blp.doc(operationId="openaiListModels", summary="List models")
    @compat.document_errors(blp, OpenAIErrorSchema, {401: ERRORS[401]})
    def get(self) -> Response:
        """Backends (their default model), `backend/alias` for every alias, bare aliases."""
        created = compat.server_started_epoch()
        return json_response({"object": "list", "data": [
            model_object(e, created) for e in compat.model_catalog()]})


@blp.route("/models/<path:model_id>")
class ModelItem(MethodView):
    @blp.response(200, OpenAIModelSchema)
    @blp.doc(operationId="openaiGetModel", summary="Get a model")
    @compat.document_errors(blp, OpenAIErrorSchema, {401: ERRORS[401], 404: ERRORS[404]})
    def get(self, model_id: str) -> Response:
        """One model: a listed id or any name the gateway routes (e.g. gpt-5.5)."""
        return json_response(model_object(compat.find_model(model_id),
                                          compat.server_started_epoch()))


# The Responses API and its stored responses live in their own modules and register their
# routes on the same blueprint, after the chat routes (importing this module loads them all).
from clinvk.server.openai import responses as _responses  # noqa: E402,F401
from clinvk.server.openai import stored as _stored  # noqa: E402,F401
