"""Background responses: a Responses API turn that runs as a job.

The response id names the job (``resp_j`` + the job's hex id), so nothing but the job
machinery decides its state: retrieve reads the job, cancel cancels it, and a stream
(at create time or a later ``GET …?stream=true&starting_after=N``) replays the job's event
log through the same :class:`ResponseShape` a foreground turn uses. The replay is a pure
function of the log, so every reader sees the same ``sequence_number`` for the same event
and ``starting_after`` resumes exactly after the last one a client saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response

from clinvk.core.engine import PromptRequest
from clinvk.core.errors import InvalidRequest, StoreError
from clinvk.core.events import DONE, ERROR, Event, TokenUsage
from clinvk.core.jobs import Job, JobService, JobStatus
from clinvk.core.jobs.model import JOB_END
from clinvk.core.jobs.responses import ResponseRecord
from clinvk.core.ownership import Principal
from clinvk.core.store.interface import ResponseTable
from clinvk.server import compat, current_gateway
from clinvk.server.openai.shapes import ResponseShape
from clinvk.server.responses import json_response
from clinvk.server.streaming import SSE_MIMETYPE, STREAM_HEADERS

_BACKGROUND_ID = re.compile(r"^resp_j([0-9a-f]{32})$")

#: Job status -> Response status. A lost job (its server died mid-run) has failed.
RESPONSE_STATUS = {
    JobStatus.QUEUED: "queued", JobStatus.RUNNING: "in_progress",
    JobStatus.SUCCEEDED: "completed", JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled", JobStatus.LOST: "failed",
}


def service() -> JobService:
    jobs = current_gateway().jobs
    if jobs is None:
        raise StoreError("the job tables could not be opened at start (see the server log)")
    return jobs


def records() -> ResponseTable:
    found = service().records
    if found is None:
        raise StoreError("the stored responses could not be opened at start (see the log)")
    return found


def is_background_id(response_id: str) -> bool:
    return _BACKGROUND_ID.match(response_id) is not None


def request_fields(args: dict[str, Any], target: compat.ModelTarget,
                   input_items: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stored response remembers of its request (the Response object echoes it)."""
    return {"model": target.requested, "instructions": args.get("instructions"),
            "metadata": args.get("metadata") or {},
            "previous_response_id": args.get("previous_response_id"),
            "store": True, "input_items": input_items}


def shape_of(record: ResponseRecord) -> ResponseShape:
    return ResponseShape(record.id, record.request["model"], record.request,
                         created_at=record.created_epoch, background=True)


def submit(req: PromptRequest, fields: dict[str, Any], *, stream: bool) -> Response:
    """Queue the turn as a prompt job; answer with the queued Response (or its stream)."""
    jobs = service()
    store = records()
    job = jobs.submit_prompt(req)
    record = ResponseRecord(id="resp_j" + job.id.removeprefix("job_"), owner=req.principal.owner,
                            request=fields, job_id=job.id,
                            created_epoch=_epoch_of(job))
    store.save(record)
    if stream:
        return stream_response(record, req.principal, None)
    return json_response(job_body(record, job))


def _epoch_of(job: Job) -> float:
    return datetime.fromisoformat(job.created_at.replace("Z", "+00:00")).timestamp()


def session_of(response_id: str, principal: Principal) -> str:
    """The session a background response's job ran in, for ``previous_response_id``."""
    jobs = service()
    record = jobs.record(response_id, principal)
    job = jobs.store.get(record.job_id) if record.job_id else None
    if job is None or job.session_id is None:
        raise InvalidRequest(f"response {response_id} has not started yet; continue it once "
                             "it has completed", field="previous_response_id")
    return job.session_id


def job_body(record: ResponseRecord, job: Job) -> dict[str, Any]:
    """The Response object of a background turn, as its job stands now."""
    status = RESPONSE_STATUS[job.status]
    result = job.result or {}
    text = result.get("output") if job.status.finished and result else None
    usage = TokenUsage.from_dict(result["token_usage"]) if result.get("token_usage") else None
    error = None
    if status == "failed":
        error = {"code": "server_error", "message": job.error or "the backend run failed"}
    body = shape_of(record).body(status, text, usage, error)
    if status != "completed" and body["output"]:
        body["output"][0]["status"] = "incomplete"
    return body


class JobReplay:
    """``response.*`` frames of a background turn, derived from its job log only."""

    def __init__(self, record: ResponseRecord, final_body: Any, after: int | None) -> None:
        self.shape = shape_of(record)
        self.final_body = final_body  # () -> the Response object once the job has ended
        self.after = -1 if after is None else after
        self.started = False

    def _keep(self, frames: list[bytes]) -> list[bytes]:
        first = self.shape.sequence - len(frames)  # frames of one step are numbered in a row
        return [f for n, f in enumerate(frames, first) if n > self.after]

    def start(self) -> list[bytes]:
        queued = self.shape.body("queued")
        return self._keep([self.shape.event("response.created", response=queued),
                           self.shape.event("response.queued", response=queued)])

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        frames: list[bytes] = []
        if event["type"] == JOB_END:
            frames += self._end(event["content"]["status"])
        elif not self.started:
            self.started = True
            frames += [self.shape.event("response.in_progress",
                                        response=self.shape.body("in_progress"))]
            frames += [
                self.shape.event("response.output_item.added", output_index=0,
                                 item=self.shape.item("in_progress", None)),
                self.shape.event("response.content_part.added", part=self.shape.part(""),
                                 **self.shape.at()),
            ]
        if event["type"] not in (JOB_END, DONE, ERROR):
            rendered = self.shape(Event(type=event["type"], content=event.get("content") or {}))
            frames += [rendered] if isinstance(rendered, bytes) else rendered or []
        return self._keep(frames)

    def _end(self, status: str) -> list[bytes]:
        frames: list[bytes] = []
        body = self.final_body()
        item_status = "completed" if status == JobStatus.SUCCEEDED else "incomplete"
        if self.started:
            text = "".join(self.shape.text)
            item = self.shape.item(item_status, text)
            frames += [
                self.shape.event("response.output_text.done", text=text, logprobs=[],
                                 **self.shape.at()),
                self.shape.event("response.content_part.done", part=self.shape.part(text),
                                 **self.shape.at()),
                self.shape.event("response.output_item.done", output_index=0, item=item),
            ]
        kind = "response.completed" if status == JobStatus.SUCCEEDED else "response.failed"
        return frames + [self.shape.event(kind, response=body)]


def stream_response(record: ResponseRecord, principal: Principal,
                    starting_after: int | None) -> Response:
    """SSE of a background turn from the start of its log (frames up to ``starting_after``
    left out); live until the job ends. Leaving does not cancel the job."""
    jobs = service()
    assert record.job_id is not None
    job_id = record.job_id
    keepalive = current_gateway().config.server.stream_keepalive_secs or None
    replay = JobReplay(record, lambda: job_body(record, jobs.get(job_id, principal)),
                       starting_after)
    events = jobs.follow(job_id, principal, 0, keepalive)

    def frames() -> Iterator[bytes]:
        yield from replay.start()
        for event in events:
            if event is None:
                yield compat.KEEPALIVE_COMMENT
            else:
                yield from replay.feed(event)

    response = Response(frames(), mimetype=SSE_MIMETYPE, direct_passthrough=True)
    response.headers.update(STREAM_HEADERS)
    return response
