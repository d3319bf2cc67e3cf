"""The OpenAI dialect's request and response schemas (marshmallow, → /openapi.json)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from clinvk.server import compat
from clinvk.server.fields import StrictBoolean, StrictInteger, StrictNumber


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

    model = compat.model_field()
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


ERRORS = {
    400: "Invalid request; `param` names the parameter (e.g. n, tools, messages[1].content).",
    401: "Missing or wrong API key.",
    404: "Unknown model (`code: model_not_found`).",
    413: "Request body too large.",
    429: "Rate limited; Retry-After says when to retry.",
    502: "The agent ran and failed (`code: backend_failed`); x-should-retry: false.",
    503: "Server saturated (Retry-After) or backend not installed (x-should-retry: false).",
    504: "The agent timed out (`code: backend_timeout`); x-should-retry: false.",
}
OK_DOC = ("A `chat.completion` object (application/json), or with `stream: true` an SSE "
           "stream of chunks (text/event-stream).")
STREAM_DOC = (
    "With `stream: true`: `text/event-stream` of `chat.completion.chunk` objects (`data: "
    "{...}` lines), the role in the first chunk, `finish_reason` in the last, a usage chunk "
    "with `stream_options.include_usage`, then `data: [DONE]`. `: keep-alive` comments keep "
    "a silent stream open; a failure after the stream started is a `data: {\"error\": "
    "{...}}` chunk followed by `[DONE]`.")
# The schema of one SSE event (as OpenAPI 3.2 and schemathesis read `schema` under
# text/event-stream: one event object per item), not of the whole body.
STREAM_EVENT = {
    "type": "object", "required": ["data"], "description": STREAM_DOC,
    "properties": {"data": {"type": "string", "description": "A `chat.completion.chunk` "
                            "object as JSON, an `{\"error\": {...}}` object as JSON, or "
                            "`[DONE]` (the last event)."}},
}


