"""The job vocabulary: what a job is, which states it goes through."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the server running it died; never re-run (agents have side effects)

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class JobKind(enum.StrEnum):
    PROMPT = "prompt"
    PARALLEL = "parallel"
    CHAIN = "chain"
    COMPARE = "compare"


#: Event types the job log adds to the run's unified events.
EVENTS_DROPPED = "events_dropped"  # marker: older events were dropped by the per-job cap
JOB_END = "job_end"  # the last event of every log: the job's final status


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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The public job object (the request body and owner stay inside)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": str(self.kind),
            "status": str(self.status),
            "backend": self.backend,
            "session_id": self.session_id,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "events": self.last_sequence,
        }
        if self.error:
            data["error"] = self.error
        if self.result is not None:
            data["result"] = self.result
            usage = self.result.get("token_usage")
            if usage is not None:
                data["usage"] = usage
        return data
