"""How a run ended, in the engine's words: status, error message, terminal event."""

from __future__ import annotations

from clinvk.core import events
from clinvk.core.engine.requests import RunResult
from clinvk.core.events import Event
from clinvk.core.types import EndReason, RunStatus

# The error code a failed run's terminal event carries (other statuses carry their own name).
BACKEND_ERROR = "backend_error"
# ... and that of a remote run whose agent host went away.
HOST_LOST = "host_lost"


def classify(reason: EndReason, exit_code: int | None, parsed_error: str | None,
             timeout: float | None) -> tuple[RunStatus, str | None]:
    """The status and error message of a run from why its process ended and what it said."""
    if reason == EndReason.TIMEOUT:
        return RunStatus.TIMEOUT, f"backend timed out after {timeout:g} s"
    if reason == EndReason.IDLE_TIMEOUT:
        return RunStatus.TIMEOUT, "backend produced no output for too long (idle timeout)"
    if reason == EndReason.CANCELLED:
        return RunStatus.CANCELLED, "run was cancelled"
    if reason == EndReason.OUTPUT_LIMIT:
        return RunStatus.FAILED, "backend output exceeded server.max_output_bytes"
    if reason == EndReason.LINE_LIMIT:
        return RunStatus.FAILED, "a backend output line exceeded server.max_line_bytes"
    if reason == EndReason.LOST:
        return RunStatus.FAILED, (f"the agent host running this went away ({parsed_error}); "
                                  "the run is lost and not re-run")
    assert reason == EndReason.EXITED
    if parsed_error:
        return RunStatus.FAILED, parsed_error
    if exit_code not in (0, None):
        return RunStatus.FAILED, f"backend exited with code {exit_code}"
    return RunStatus.OK, None


def reported_exit_code(status: RunStatus, exit_code: int | None) -> int | None:
    """The exit code a result reports: a failure is never reported as exit 0."""
    if status == RunStatus.FAILED and exit_code == 0:
        return 1  # the backend reported an error but exited 0
    return exit_code


def terminal_event(result: RunResult) -> Event:
    """The last event of a run: ``done`` for a success, ``error`` with a code otherwise."""
    if result.ok:
        return Event(events.DONE, {
            "token_usage": result.token_usage.to_dict(),
            "duration_ms": result.duration_ms,
            "exit_code": result.exit_code,
            "output": result.output,
            "model": result.model,
            "backend_session_id": result.backend_session_id,
        })
    return Event(events.ERROR, {
        "code": HOST_LOST if result.lost else (
            BACKEND_ERROR if result.status == RunStatus.FAILED else str(result.status)),
        "message": result.error,
        "exit_code": result.exit_code,
        "output": result.output,
        "token_usage": result.token_usage.to_dict(),
        "duration_ms": result.duration_ms,
    })
