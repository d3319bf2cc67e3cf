"""The job vocabulary: what a job is, which states it goes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clinvk.core.types import JobKind, JobStatus

__all__ = ["EVENTS_DROPPED", "JOB_END", "TASK_END", "Job", "JobKind", "JobPage", "JobStatus",
           "public_job"]


#: Event types the job log adds to the run's unified events.
EVENTS_DROPPED = "events_dropped"  # marker: older events were dropped by the per-job cap
JOB_END = "job_end"  # the last event of every log: the job's final status
TASK_END = "task_end"  # a parallel task / chain step / compare backend is done (its status)


@dataclass
class Job:
    id: str
    kind: JobKind
    status: JobStatus
    owner: str | None
    backend: str | None
    request: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    session_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False
    last_sequence: int = 0
    dropped_through: int = 0
    callback_url: str | None = None
    webhook: dict[str, Any] | None = None  # the delivery record (jobs/webhooks.py)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, webhook: bool = True) -> dict[str, Any]:
        """The public job object (the request body and owner stay inside); ``webhook=False``
        leaves out the delivery record (the webhook's own payload)."""
        return public_job(
            job_id=self.id, kind=self.kind, status=self.status, backend=self.backend,
            session_id=self.session_id, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at,
            events=self.last_sequence, error=self.error, result=self.result,
            webhook=self.webhook if webhook else None)


@dataclass
class JobPage:
    """One page of a job listing: the public job objects, newest first, and the keyset
    (created epoch, id) of the page's last job when more jobs follow it."""

    records: list[dict[str, Any]]
    next_key: tuple[float, str] | None = None


def public_job(*, job_id: str, kind: str, status: str, backend: str | None,
               session_id: str | None, created_at: str, started_at: str | None,
               finished_at: str | None, events: int, error: str | None,
               result: dict[str, Any] | None, webhook: dict[str, Any] | None
               ) -> dict[str, Any]:
    """The public job object from its values: what ``Job.to_dict`` returns, and what a
    listing builds straight from a row without a ``Job`` in between."""
    data: dict[str, Any] = {
        "id": job_id,
        "kind": str(kind),
        "status": str(status),
        "backend": backend,
        "session_id": session_id,
        "created_at": created_at,
        "started_at": started_at,
        "finished_at": finished_at,
        "events": events,
    }
    if error:
        data["error"] = error
    if result is not None:
        data["result"] = result
        usage = _usage_of(result)
        if usage is not None:
            data["usage"] = usage
    if webhook is not None:
        data["webhook"] = webhook
    return data


def _usage_of(result: dict[str, Any]) -> dict[str, Any] | None:
    """A prompt's token usage, or the sum over the sub-runs of a parallel/chain/compare."""
    if "results" not in result:
        return result.get("token_usage")
    reported = [r["token_usage"] for r in result["results"] if r.get("token_usage")]
    if not reported:
        return None
    total: dict[str, Any] = {}
    for usage in reported:
        for key, value in usage.items():
            if value is not None:
                total[key] = total.get(key, 0) + value
            else:
                total.setdefault(key, None)
    return total
