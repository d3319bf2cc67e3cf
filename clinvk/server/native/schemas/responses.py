"""Native response bodies, as the handlers dump them and ``/openapi.json`` documents them.

The native routes are documented in the default envelope mode (``{"success": true,
"data": ...}``); the bare mode returns the ``data`` object itself (see docs/api.md).
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields

from clinvk.core.store import STATUSES
from clinvk.core.types import (
    BrokerState,
    HealthStatus,
    JobKind,
    JobStatus,
    RunStatus,
    TaskState,
    WebhookState,
    values,
)

RUN_STATUSES = values(RunStatus)
TASK_STATUSES = (*RUN_STATUSES, TaskState.SKIPPED.value)


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
