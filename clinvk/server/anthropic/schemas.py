"""The Anthropic dialect's request and response schemas (marshmallow, → /openapi.json)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from clinvk.server import compat
from clinvk.server.anthropic.errors import ERROR_TYPES
from clinvk.server.fields import StrictBoolean, StrictInteger, StrictNumber


class AnthropicErrorDetailSchema(Schema):
    type = fields.String(metadata={"enum": sorted(set(ERROR_TYPES.values()) | {"api_error"})})
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

    model = compat.model_field()
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


ERRORS = {
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
OK_DOC = ("A `message` object (application/json), or with `stream: true` an SSE stream of "
           "events (text/event-stream).")
STREAM_DOC = (
    "With `stream: true`: `text/event-stream` with the events message_start, "
    "content_block_start, content_block_delta (text_delta)..., content_block_stop, "
    "message_delta (stop_reason, usage), message_stop; `ping` events while the backend is "
    "silent; a failure after the stream started is an `error` event that ends the stream.")
# The schema of one SSE event (as OpenAPI 3.2 and schemathesis read `schema` under
# text/event-stream: one event object per item), not of the whole body.
STREAM_EVENT = {
    "type": "object", "required": ["event", "data"], "description": STREAM_DOC,
    "properties": {
        "event": {"type": "string", "enum": [
            "message_start", "content_block_start", "content_block_delta",
            "content_block_stop", "message_delta", "message_stop", "ping", "error"]},
        "data": {"type": "string", "description": "The event's JSON object; its `type` is "
                 "the event name."},
    },
}
