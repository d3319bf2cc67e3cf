"""Native request bodies: strict, every failure naming its field (``tasks[2].backend``).

Unknown fields are refused (a typo like ``promt`` must not silently become "no prompt"),
integers must be JSON integers, booleans JSON booleans, ``null`` means "not given".
``$schema`` is tolerated because the Go server's clients may echo it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from clinvk.core.backends.base import APPROVAL_MODES, SANDBOX_MODES
from clinvk.core.store import MAX_LIST_LIMIT, STATUSES
from clinvk.core.types import OutputFormat, values
from clinvk.server.fields import Choice, StrictBoolean, StrictInteger, StrictNumber

OUTPUT_FORMATS = ("default", *values(OutputFormat))

_REQUIRED = {"required": "is required", "null": "is required and must not be null"}


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty")



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


def _callback_field() -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=2048),
                         metadata={"description": _CALLBACK})


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
    callback_url = _callback_field()

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
    callback_url = _callback_field()


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
    callback_url = _callback_field()


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
    callback_url = _callback_field()


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
