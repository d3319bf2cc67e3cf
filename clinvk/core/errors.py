"""Engine errors.

Every failure the engine can report is a :class:`ClinvkError` with a stable machine
``code``. The edges translate codes into their own vocabulary (HTTP status and body
shape, CLI exit code); the engine itself never knows about either.
"""

from __future__ import annotations

from typing import Any


class ClinvkError(Exception):
    """Base class: a human message plus a machine code and the offending field."""

    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: Any = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(ClinvkError):
    """The configuration file or an override is invalid (file, key and reason in the text)."""

    code = "config_error"


class InvalidRequest(ClinvkError):
    """Caller input is malformed; ``field`` names the offending field."""

    code = "invalid_request"


class UnknownBackend(InvalidRequest):
    code = "unknown_backend"


class PolicyViolation(ClinvkError):
    """The request is well formed but the server's policy refuses it (workdir, privilege)."""

    code = "forbidden"


class NotFound(ClinvkError):
    code = "not_found"


class AmbiguousPrefix(InvalidRequest):
    code = "ambiguous_session_prefix"


class SessionBusy(ClinvkError):
    """Another continuation of the same session is running right now."""

    code = "session_busy"


class BackendUnavailable(ClinvkError):
    """The backend's binary cannot be found or executed."""

    code = "backend_unavailable"


class Saturated(ClinvkError):
    """Too many concurrent runs; ``retry_after`` says when to try again."""

    code = "server_saturated"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(ClinvkError):
    """The session store cannot be read or written (disk full, permissions, corruption)."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached at all right now (PostgreSQL down or unreachable, the
    SQLite file cannot be opened or read): a transient outage, worth retrying later.

    ``message`` is for the server log (it names the database); clients get a fixed text.
    """

    code = "store_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class JobQueueFull(Saturated):
    """The server's queue of waiting jobs is at its cap (server.jobs_max_queued)."""

    code = "job_queue_full"


class JobNotFinished(ClinvkError):
    """The operation needs a finished job (delete a running one: cancel it first)."""

    code = "job_not_finished"


class BrokerUnavailable(Saturated):
    """The Celery broker (Redis) cannot be reached: nothing can be queued or followed."""

    code = "broker_unavailable"


class HostUnavailable(Saturated):
    """The agent host holding a session's backend state is gone (no heartbeat)."""

    code = "host_unavailable"


class RunAlreadyStarted(ClinvkError):
    """A job's run was taken by an agent host before the gateway that placed it died: it is
    never started a second time (agents have side effects), so its job is ``lost``."""

    code = "run_already_started"


class RunWithdrawn(ClinvkError):
    """A job's run was withdrawn (the job cancelled) while it waited for an agent host."""

    code = "run_withdrawn"


class BudgetExceeded(Saturated):
    """The caller's key has used up a budget (server.budgets) until its window resets."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, budget: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.field = "budget"
        self.details = {"budget": budget, "retry_after": retry_after}
