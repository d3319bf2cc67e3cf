"""marshmallow schemas for every native request and response (and /health).

Requests are strict, the way a typed client expects: unknown fields are refused (a typo
like ``promt`` must not silently become "no prompt"), integers must be JSON integers,
booleans JSON booleans, ``null`` means "not given". ``$schema`` is tolerated because the
Go server's clients may echo it. Every failure names its field (``tasks[2].backend``).

Response schemas serve two purposes: they shape what the handlers dump, and flask-smorest
turns them into ``/openapi.json``. The native routes are documented in the default
envelope mode (``{"success": true, "data": ...}``); the bare mode returns the ``data``
object itself (see docs/api.md).
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from clinvk.core.backends.base import APPROVAL_MODES, SANDBOX_MODES
from clinvk.core.jobs.model import JobStatus
from clinvk.core.store import MAX_LIST_LIMIT, STATUSES
from clinvk.core.types import (
    BrokerState,
    HealthStatus,
    JobKind,
    RunStatus,
    TaskState,
    WebhookState,
    values,
)

OUTPUT_FORMATS = ("default", "text", "json", "stream-json")
RUN_STATUSES = values(RunStatus)
TASK_STATUSES = (*RUN_STATUSES, TaskState.SKIPPED.value)

_REQUIRED = {"required": "is required", "null": "is required and must not be null"}


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty")


# --------------------------------------------------------------------------- strict fields


class StrictBoolean(fields.Boolean):
    """Only JSON ``true``/``false`` (marshmallow would also take ``"yes"`` or ``1``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictInteger(fields.Integer):
    """Only JSON integers: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictNumber(fields.Float):
    """A JSON number (integer or float), never a string or boolean."""

    def _validated(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Choice(fields.String):
    """A string from a fixed set, compared case-insensitively; ``""`` means "not given"."""

    def __init__(self, choices: tuple[str, ...], **kwargs: Any) -> None:
        self.choices = choices
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"enum": list(choices), **kwargs["metadata"]}
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip().lower()
        if not text:
            return None
        if text not in self.choices:
            raise ValidationError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        return text


def _opt_str(description: str, **kwargs: Any) -> fields.String:
    return fields.String(allow_none=True, metadata={"description": description}, **kwargs)


def _req_str(description: str) -> fields.String:
    return fields.String(required=True, validate=_not_blank, error_messages=_REQUIRED,
                         metadata={"description": description})


def _opt_bool(description: str) -> StrictBoolean:
    return StrictBoolean(allow_none=True, metadata={"description": description})


def _opt_int(description: str, minimum: int = 0, maximum: int | None = None) -> StrictInteger:
    return StrictInteger(allow_none=True, validate=validate.Range(min=minimum, max=maximum),
                         metadata={"description": description})


class RequestSchema(Schema):
    """Base for request bodies: unknown keys refused, ``$schema`` tolerated."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _drop_schema_key(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "$schema" in data:
            data = {k: v for k, v in data.items() if k != "$schema"}
        return data


# --------------------------------------------------------------------------- requests


class RunOptionsSchema(RequestSchema):
    """Options shared by a prompt, a parallel task, a chain step and a compare request."""

    model = _opt_str("Model name or alias (fast, balanced, best); default: the backend's "
                     "configured model.")
    workdir = _opt_str("Absolute working directory for the CLI (server policy applies); "
                       "default: the server's working directory.")
    approval_mode = Choice(APPROVAL_MODES, metadata={
        "description": "Unified approval mode (`none` needs server.allow_dangerous_modes)."})
    sandbox_mode = Choice(SANDBOX_MODES, metadata={
        "description": "Unified sandbox mode (`full` needs server.allow_dangerous_modes)."})
    max_tokens = _opt_int("Accepted for compatibility; no current CLI has a token limit flag.")
    max_turns = _opt_int("Agent turn limit (claude).")
    system_prompt = _opt_str("System instructions (prepended to the prompt where the CLI has "
                             "no flag for them).")
    verbose = _opt_bool("Ask the CLI for verbose output.")
    extra = fields.List(fields.String(), allow_none=True, metadata={
        "description": "Extra CLI flags, checked against the backend's allow-list."})
    timeout_secs = StrictNumber(allow_none=True,
                                validate=validate.Range(min=0, min_inclusive=False),
                                metadata={"description": "Run timeout in seconds (at most "
                                          "server.request_timeout_secs)."})


def _metadata_field(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True,
                       metadata={"description": description})


_BACKGROUND = "Run as a job: answer 202 with the job object at once (docs/jobs.md)."
_CALLBACK = ("Jobs only (with background, or on POST /jobs): an http(s) URL on the server's "
             "webhook allow-list that gets the signed job object when the job finishes.")


class PromptRequestSchema(RunOptionsSchema):
    """POST /api/v1/prompt: one prompt, in a new session or a continued one."""

    backend = fields.String(allow_none=True, validate=_not_blank, metadata={
        "description": "claude, codex or gemini; required unless session_id is given."})
    prompt = _req_str("The prompt text (sent to the CLI on stdin, never as an option).")
    session_id = _opt_str("Continue this session (full id or unique prefix).")
    ephemeral = _opt_bool("Do not keep a session for this run.")
    output_format = Choice(OUTPUT_FORMATS, metadata={
        "description": "`stream-json` streams NDJSON unified events; anything else returns "
                       "one JSON result."})
    dry_run = _opt_bool("Resolve everything and return the exact argv without starting the "
                        "CLI.")
    metadata = _metadata_field("Stored on the session.")
    background = _opt_bool(_BACKGROUND)
    callback_url = fields.String(validate=validate.Length(min=1, max=2048),
                                 metadata={"description": _CALLBACK})

    @validates_schema
    def _backend_unless_session(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("session_id") and not data.get("backend"):
            raise ValidationError("is required (unless session_id is given)",
                                  field_name="backend")


class ParallelTaskSchema(RunOptionsSchema):
    """One task of a parallel request (always ephemeral)."""

    backend = _req_str("claude, codex or gemini.")
    prompt = _req_str("The prompt text.")
    ephemeral = _opt_bool("Accepted for compatibility; parallel tasks are always ephemeral.")
    output_format = Choice(OUTPUT_FORMATS, metadata={
        "description": "Accepted for compatibility; results are always JSON."})
    dry_run = _opt_bool("Dry-run this task.")
    metadata = _metadata_field("Accepted for compatibility; ignored (no session).")


class ParallelRequestSchema(RequestSchema):
    """POST /api/v1/parallel."""

    tasks = fields.List(fields.Nested(ParallelTaskSchema), required=True,
                        error_messages=_REQUIRED,
                        metadata={"description": "Tasks to run (at most "
                                  "server.max_parallel_tasks)."})
    max_parallel = _opt_int("Tasks running at once (default parallel.max_workers, at most "
                            "parallel.max_parallel_limit; 0 = default).")
    fail_fast = _opt_bool("Cancel running and queued tasks after the first failure.")
    dry_run = _opt_bool("Dry-run every task.")
    background = _opt_bool(_BACKGROUND)
    callback_url = fields.String(validate=validate.Length(min=1, max=2048),
                                 metadata={"description": _CALLBACK})


class ChainStepSchema(RunOptionsSchema):
    """One step of a chain; `{{previous}}` in the prompt is the previous step's output."""

    backend = _req_str("claude, codex or gemini.")
    prompt = _req_str("The prompt text; `{{previous}}` is replaced by the previous step's "
                      "output.")
    name = _opt_str("A label echoed in the step's result.")


class ChainRequestSchema(RequestSchema):
    """POST /api/v1/chain."""

    steps = fields.List(fields.Nested(ChainStepSchema), required=True, error_messages=_REQUIRED,
                        metadata={"description": "Steps in order (at most "
                                  "server.max_chain_steps)."})
    stop_on_failure = _opt_bool("Skip the remaining steps after a failed one (default false).")
    pass_working_dir = _opt_bool("A step without workdir runs in the previous step's.")
    pass_session_id = _opt_bool("Not supported (chains are ephemeral); true is a 400.")
    persist_sessions = _opt_bool("Not supported (chains are ephemeral); true is a 400.")
    dry_run = _opt_bool("Dry-run every step.")
    background = _opt_bool(_BACKGROUND)
    callback_url = fields.String(validate=validate.Length(min=1, max=2048),
                                 metadata={"description": _CALLBACK})


class CompareRequestSchema(RunOptionsSchema):
    """POST /api/v1/compare: one prompt, several backends."""

    backends = fields.List(fields.String(validate=_not_blank), required=True,
                           error_messages=_REQUIRED,
                           metadata={"description": "Backends to ask (at most "
                                     "server.max_compare_backends)."})
    prompt = _req_str("The prompt text.")
    sequential = _opt_bool("Run one backend after the other instead of concurrently.")
    dry_run = _opt_bool("Dry-run every backend.")
    background = _opt_bool(_BACKGROUND)
    callback_url = fields.String(validate=validate.Length(min=1, max=2048),
                                 metadata={"description": _CALLBACK})


class SessionListQuerySchema(Schema):
    """Filters and pagination for GET /api/v1/sessions."""

    class Meta:
        unknown = RAISE

    backend = fields.String(metadata={"description": "Only this backend."})
    status = fields.String(validate=validate.OneOf(STATUSES),
                           metadata={"description": "Only this status."})
    tag = fields.String(metadata={"description": "Only sessions with this tag."})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIST_LIMIT),
                           metadata={"description": f"Page size (1..{MAX_LIST_LIMIT})."})
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0),
                            metadata={"description": "Sessions to skip (cost grows with depth; "
                                                     "prefer cursor)."})
    cursor = fields.String(validate=validate.Length(min=1),
                           metadata={"description": "next_cursor of the previous page: the "
                                                    "page after it, at any depth."})


# --------------------------------------------------------------------------- responses


class TokenUsageSchema(Schema):
    input_tokens = fields.Integer(metadata={"description": "All input, cached included."})
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    reasoning_tokens = fields.Integer()
    total_tokens = fields.Integer()
    cost_usd = fields.Float(allow_none=True)


class RunResultSchema(Schema):
    """Fields every run result has."""

    backend = fields.String()
    model = fields.String(allow_none=True,
                          metadata={"description": "The model actually used, if known."})
    status = fields.String(metadata={"enum": list(RUN_STATUSES)})
    exit_code = fields.Integer(allow_none=True,
                               metadata={"description": "The CLI's exit code (null when it "
                                         "never ran or was killed)."})
    duration_ms = fields.Integer()
    output = fields.String(metadata={"description": "The final response text."})
    token_usage = fields.Nested(TokenUsageSchema, allow_none=True)
    backend_session_id = fields.String(allow_none=True)
    working_dir = fields.String()
    error = fields.String(metadata={"description": "Present when the run failed."})
    notice = fields.String(metadata={
        "description": "Present when the run differs from the request: with "
                       "execution.host_fallback new_session, a resume whose agent host was "
                       "gone started a new backend session on another host."})


class PromptResultSchema(RunResultSchema):
    """The result of one prompt."""

    session_id = fields.String(allow_none=True,
                               metadata={"description": "clinvk session id (null when "
                                         "ephemeral)."})
    dry_run = fields.Boolean(metadata={"description": "Present (true) on dry runs."})
    command = fields.List(fields.String(), metadata={
        "description": "Dry runs: the exact argv (the prompt travels on stdin)."})


class TaskResultSchema(RunResultSchema):
    """One task's result in a parallel, chain or compare response."""

    step = fields.Integer(metadata={"description": "Chains: 1-based step number."})
    name = fields.String(allow_none=True, metadata={"description": "Chains: the step's name."})
    status = fields.String(metadata={"enum": list(TASK_STATUSES)})
    error_code = fields.String(metadata={"description": "Machine code when the task could not "
                                         "start (e.g. forbidden, server_saturated)."})


class ParallelResponseSchema(Schema):
    total_tasks = fields.Integer()
    completed = fields.Integer(metadata={"description": "Tasks with status ok."})
    failed = fields.Integer(metadata={"description": "Tasks that failed or timed out."})
    cancelled = fields.Integer(metadata={"description": "Tasks stopped by fail_fast."})
    total_duration_ms = fields.Integer()
    results = fields.List(fields.Nested(TaskResultSchema),
                          metadata={"description": "In input order."})


class ChainResponseSchema(Schema):
    total_steps = fields.Integer()
    completed_steps = fields.Integer()
    failed_step = fields.Integer(allow_none=True,
                                 metadata={"description": "1-based number of the last failed "
                                           "step; null when none failed."})
    total_duration_ms = fields.Integer()
    results = fields.List(fields.Nested(TaskResultSchema),
                          metadata={"description": "One per step; skipped steps have status "
                                    "skipped."})


class CompareResponseSchema(Schema):
    prompt = fields.String()
    backends = fields.List(fields.String())
    completed = fields.Integer()
    failed = fields.Integer()
    total_duration_ms = fields.Integer()
    results = fields.List(fields.Nested(TaskResultSchema),
                          metadata={"description": "In the order of `backends`."})


class BackendInfoSchema(Schema):
    name = fields.String()
    available = fields.Boolean(metadata={"description": "The binary resolves and is "
                                         "executable."})
    version = fields.String(allow_none=True)
    default_model = fields.String(allow_none=True,
                                  metadata={"description": "Configured default model (null = "
                                            "the CLI's own default)."})
    path = fields.String(allow_none=True, metadata={"description": "Resolved binary path."})


class BackendListSchema(Schema):
    backends = fields.List(fields.Nested(BackendInfoSchema))


class SessionSchema(Schema):
    id = fields.String(metadata={"description": "32 lowercase hex characters."})
    backend = fields.String()
    backend_session_id = fields.String(allow_none=True)
    created_at = fields.String(metadata={"description": "RFC 3339 UTC."})
    last_used = fields.String(metadata={"description": "RFC 3339 UTC."})
    working_dir = fields.String()
    model = fields.String(allow_none=True)
    initial_prompt = fields.String()
    title = fields.String()
    status = fields.String(metadata={"enum": list(STATUSES)})
    turn_count = fields.Integer()
    token_usage = fields.Nested(TokenUsageSchema)
    tags = fields.List(fields.String())
    metadata = fields.Dict(keys=fields.String(), values=fields.Raw())
    error_message = fields.String(allow_none=True)
    parent_id = fields.String(allow_none=True)


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema))
    total = fields.Integer(metadata={"description": "Matches before pagination."})
    limit = fields.Integer()
    offset = fields.Integer()
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "Pass as cursor for the next page; null on the last page."})


class SessionDeletedSchema(Schema):
    deleted = fields.Boolean()
    id = fields.String(metadata={"description": "The full id of the deleted session."})


class HealthBackendSchema(Schema):
    name = fields.String()
    available = fields.Boolean()


class SessionStoreHealthSchema(Schema):
    available = fields.Boolean()
    session_count = fields.Integer(allow_none=True)
    error = fields.String(metadata={"description": "Present when the store is unusable."})


class AgentHostSchema(Schema):
    name = fields.String()
    backends = fields.List(fields.String())
    concurrency = fields.Integer()


class ExecutionHealthSchema(Schema):
    """Only with ``execution.mode: celery``: the broker, the agent hosts, queue depths."""

    mode = fields.String(metadata={"enum": ["celery"]})
    broker = fields.String(metadata={"enum": list(values(BrokerState))})
    hosts = fields.List(fields.Nested(AgentHostSchema),
                        metadata={"description": "Live agent hosts (clinvk worker)."})
    queues = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Runs waiting per Celery queue (a backend's or a host's)."})


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": list(values(HealthStatus))})
    version = fields.String()
    uptime = fields.String(metadata={"description": "Human form, e.g. 3m25s."})
    uptime_millis = fields.Integer()
    backends = fields.List(fields.Nested(HealthBackendSchema))
    session_store = fields.Nested(SessionStoreHealthSchema)
    execution = fields.Nested(ExecutionHealthSchema)


class ErrorDetailsSchema(Schema):
    """Open: a code may add its own keys (e.g. ``session_id``/``lease_expires`` on 409)."""

    class Meta:
        unknown = INCLUDE  # documented as additionalProperties: true

    field = fields.String(metadata={"description": "The offending field, e.g. tasks[0].backend."})
    location = fields.String(metadata={"description": "Where the field is: body or query."})
    errors = fields.List(fields.Dict(), metadata={"description": "Every validation problem."})
    candidates = fields.List(fields.String(), metadata={
        "description": "ambiguous_session_prefix: some of the matching session ids."})


class ApiErrorSchema(Schema):
    """Native error body (envelope mode); bare mode is {error: <code>, message}."""

    success = fields.Boolean(metadata={"enum": [False]})
    error = fields.String(metadata={"description": "Human-readable message."})
    code = fields.String(metadata={"description": "Machine code, e.g. invalid_request."})
    details = fields.Nested(ErrorDetailsSchema)
    data = fields.Raw(metadata={"description": "502/504: the (partial) run result."})


def envelope(name: str, data_schema: type[Schema]) -> type[Schema]:
    """The success envelope ``{"success": true, "data": <data_schema>}`` as its own schema."""
    return Schema.from_dict(
        {"success": fields.Boolean(metadata={"enum": [True]}),
         "data": fields.Nested(data_schema)},
        name=name,
    )


PromptEnvelope = envelope("PromptEnvelope", PromptResultSchema)
ParallelEnvelope = envelope("ParallelEnvelope", ParallelResponseSchema)
ChainEnvelope = envelope("ChainEnvelope", ChainResponseSchema)
CompareEnvelope = envelope("CompareEnvelope", CompareResponseSchema)
BackendListEnvelope = envelope("BackendListEnvelope", BackendListSchema)
SessionListEnvelope = envelope("SessionListEnvelope", SessionListSchema)
SessionEnvelope = envelope("SessionEnvelope", SessionSchema)
SessionDeletedEnvelope = envelope("SessionDeletedEnvelope", SessionDeletedSchema)


_INSTANCES: dict[type[Schema], Schema] = {}


class WebhookSchema(Schema):
    url = fields.String()
    state = fields.String(metadata={"enum": values(WebhookState)})
    attempts = fields.Integer(metadata={"description": "Attempts made so far."})
    last_status = fields.Integer(allow_none=True, metadata={
        "description": "HTTP status of the last attempt (null: no answer)."})
    last_error = fields.String(allow_none=True, metadata={
        "description": "Why the last attempt failed (timeout, refused, HTTP status)."})
    delivered_at = fields.String(allow_none=True, metadata={"description": "RFC 3339 UTC."})


class JobSchema(Schema):
    id = fields.String()
    kind = fields.String(metadata={"enum": list(JobKind)})
    status = fields.String(metadata={"enum": list(JobStatus)})
    backend = fields.String(allow_none=True)
    session_id = fields.String(allow_none=True)
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    events = fields.Integer(metadata={"description": "Sequence number of the last event."})
    error = fields.String()
    result = fields.Dict(metadata={"description": "The run's result once finished."})
    usage = fields.Dict()
    webhook = fields.Nested(WebhookSchema, metadata={
        "description": "Present when the job was submitted with a callback_url."})


JobEnvelope = envelope("JobEnvelope", JobSchema)


def dump(schema_class: type[Schema], data: Any) -> Any:
    """Serialise with a shared instance (building a marshmallow schema copies its fields)."""
    schema = _INSTANCES.get(schema_class)
    if schema is None:
        schema = _INSTANCES.setdefault(schema_class, schema_class())
    return schema.dump(data)
