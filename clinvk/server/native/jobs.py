"""The jobs API (``/api/v1/jobs``): runs that outlive their request (docs/jobs.md).

Handlers translate only; submitting, running, cancelling and following live in
:class:`clinvk.core.jobs.JobService`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import INCLUDE, Schema, fields, post_load, validate

from clinvk.core.errors import InvalidRequest, StoreError
from clinvk.core.jobs import JobKind, JobService, JobStatus
from clinvk.core.jobs.model import JOB_END
from clinvk.core.store.cursor import decode_cursor, encode_cursor
from clinvk.server.gateway import current_gateway
from clinvk.server.native.plans import PLAN_BUILDERS
from clinvk.server.native.run_requests import prompt_request
from clinvk.server.native.schemas import (
    ChainRequestSchema,
    CompareRequestSchema,
    JobEnvelope,
    JobSchema,
    ParallelRequestSchema,
    PromptRequestSchema,
    envelope,
)
from clinvk.server.native.views import URL_PREFIX, ok, submitted_job
from clinvk.server.parsing import Blueprint, check_body_request
from clinvk.server.security import identify
from clinvk.server.streaming import NDJSON_MIMETYPE, SSE_MIMETYPE, STREAM_HEADERS

blp = Blueprint("jobs", __name__, url_prefix=URL_PREFIX,
                description="Jobs: background runs with durable, resumable event logs.")
blp.before_request(check_body_request)


_KIND_BODIES: dict[str, type[Schema]] = {
    JobKind.PROMPT: PromptRequestSchema, JobKind.PARALLEL: ParallelRequestSchema,
    JobKind.CHAIN: ChainRequestSchema, JobKind.COMPARE: CompareRequestSchema}


class JobSubmitSchema(Schema):
    """POST /api/v1/jobs: ``kind`` plus the body of that kind's route, validated by the
    route's own schema (so a job refuses exactly what the route refuses)."""

    class Meta:
        unknown = INCLUDE

    kind = fields.String(load_default=JobKind.PROMPT, validate=validate.OneOf(list(JobKind)),
                         metadata={"description": "prompt (default), parallel, chain or "
                                   "compare; the other fields are that route's body: "
                                   "PromptRequest, ParallelRequest, ChainRequest, "
                                   "CompareRequest."})

    @post_load
    def _load_kind_body(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        kind = JobKind(data.pop("kind"))
        body = _KIND_BODIES[kind]().load(data)
        body.pop("background", None)
        return {"kind": kind, "body": body}


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True)


class JobListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(list(JobStatus)))
    kind = fields.String(validate=validate.OneOf(list(JobKind)))
    backend = fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,63}$"))
    since = fields.String(metadata={"description": "RFC 3339 time: jobs created at or after."})
    cursor = fields.String(metadata={"description": "next_cursor of the previous page."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class EventsQuerySchema(Schema):
    after = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "Only events with a higher sequence number (as Last-Event-ID)."})


JobListEnvelope = envelope("JobListEnvelope", JobListSchema)


def _service() -> JobService:
    jobs = current_gateway().jobs
    if jobs is None:
        raise StoreError("the job tables could not be opened at start (see the server log)")
    return jobs


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidRequest("must be an RFC 3339 time", field="since") from None


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobSubmitSchema())
    @blp.response(202, JobEnvelope, description="The queued job; Location names it.")
    @blp.doc(operationId="submitJob", summary="Submit a background job")
    def post(self, args: dict[str, Any]) -> Response:
        """Queue a run; it keeps going when the client leaves. 429 when the queue is full."""
        kind, body = args["kind"], args["body"]
        callback_url = body.pop("callback_url", None)
        if kind != JobKind.PROMPT:
            return submitted_job(_service().submit_plan(PLAN_BUILDERS[kind](body),
                                                        callback_url=callback_url))
        body.pop("output_format", None)
        return submitted_job(_service().submit_prompt(prompt_request(body, tags=["api", "job"]),
                                                      callback_url=callback_url))

    @blp.arguments(JobListQuerySchema(), location="query")
    @blp.response(200, JobListEnvelope)
    @blp.doc(operationId="listJobs", summary="List jobs")
    def get(self, args: dict[str, Any]) -> Response:
        """The caller's jobs, newest first, one page per cursor."""
        principal = identify().principal
        before = None
        if args.get("cursor"):
            epoch, last_id = decode_cursor(args["cursor"], (float, str))
            before = (float(epoch), str(last_id))
        # The page is built from the rows directly: public job objects, and the keyset of
        # the page's last row as the cursor (it does not depend on that job still existing).
        page = _service().store.list(owner=principal.owner, sees_all=principal.sees_all,
                                     status=args.get("status"), kind=args.get("kind"),
                                     backend=args.get("backend"),
                                     since=_since(args.get("since")), before=before,
                                     limit=args["limit"])
        return ok({"jobs": page.records,
                   "next_cursor": encode_cursor(page.next_key) if page.next_key else None})


@blp.route("/jobs/<string:job_id>")
class JobItem(MethodView):
    @blp.response(200, JobEnvelope)
    @blp.doc(operationId="getJob", summary="Get a job (its result once finished)")
    def get(self, job_id: str) -> Response:
        return ok(_service().get(job_id, identify().principal).to_dict())

    @blp.response(200, JobEnvelope)
    @blp.doc(operationId="deleteJob", summary="Delete a finished job and its event log")
    def delete(self, job_id: str) -> Response:
        return ok(_service().delete(job_id, identify().principal).to_dict())


@blp.route("/jobs/<string:job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(200, JobEnvelope)
    @blp.doc(operationId="cancelJob", summary="Cancel a job (idempotent)")
    def post(self, job_id: str) -> Response:
        """Stops the run's process group (from whichever worker runs it); partial output
        stays on the job."""
        return ok(_service().cancel(job_id, identify().principal).to_dict())


def _sse(event: dict[str, Any] | None) -> bytes:
    if event is None:
        return b": keep-alive\n\n"
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['sequence']}\nevent: {event['type']}\ndata: {body}\n\n".encode()


def _ndjson(event: dict[str, Any] | None) -> bytes:
    if event is None:
        return b"\n"
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@blp.route("/jobs/<string:job_id>/events")
class JobEvents(MethodView):
    @blp.arguments(EventsQuerySchema(), location="query")
    @blp.response(200, description="SSE (`id:` = sequence number) or NDJSON by Accept; "
                  f"ends with a `{JOB_END}` event.")
    @blp.doc(operationId="jobEvents", summary="Follow a job's events")
    def get(self, args: dict[str, Any], job_id: str) -> Response:
        after = args.get("after")
        if after is None:
            last = request.headers.get("Last-Event-ID", "").strip()
            if last and not last.isdigit():
                raise InvalidRequest("must be a sequence number", field="Last-Event-ID")
            after = int(last) if last else 0
        keepalive = current_gateway().config.server.stream_keepalive_secs or None
        ndjson = NDJSON_MIMETYPE in request.headers.get("Accept", "")
        events = _service().follow(job_id, identify().principal, after, keepalive)
        first = next(events, None)  # a 404 is raised here, before the stream starts
        render = _ndjson if ndjson else _sse

        def frames() -> Iterator[bytes]:
            if first is not None:
                yield render(first)
            for event in events:
                yield render(event)

        response = Response(frames(), mimetype=NDJSON_MIMETYPE if ndjson else SSE_MIMETYPE,
                            direct_passthrough=True)
        response.headers.update(STREAM_HEADERS)
        return response
