"""What goes into a run and what comes out: the request, the prepared run, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clinvk.core.events import TokenUsage
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.types import RunOrigin, RunStatus

if TYPE_CHECKING:
    from clinvk.core.backends import Backend
    from clinvk.core.backends.base import Invocation
    from clinvk.core.execution import Placement
    from clinvk.core.store import Session


@dataclass
class PromptRequest:
    """One turn as a caller asks for it (unvalidated)."""

    prompt: str
    backend: str | None = None
    model: str | None = None
    workdir: str | None = None
    session_id: str | None = None
    ephemeral: bool = False
    approval_mode: str | None = None
    sandbox_mode: str | None = None
    max_turns: int | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    verbose: bool = False
    dry_run: bool = False
    extra_flags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    timeout_secs: float | None = None
    parent_id: str | None = None
    # Who asks (clinvk.core.ownership): sessions it creates are owned by its key id, and it
    # can only continue sessions it may see.
    principal: Principal = LOCAL
    # Which edge asks (the usage ledger's origin column).
    origin: RunOrigin = RunOrigin.CLI
    # Whether anyone sees the run's events (and so its session id) while it runs. False
    # (a synchronous answer): a new session's row is written once, with its first turn,
    # when that turn is recorded (docs/sessions.md, "When a turn is recorded").
    live_events: bool = True
    # The run's name on the agent hosts (execution.mode celery), stable across gateway
    # restarts: a job's runs have one, so that a gateway taking over a queued job places the
    # same run again and a host never starts it twice. None: a fresh name per run.
    run_key: str | None = None


# The request fields that carry text a CLI receives or the store keeps.
TEXT_FIELDS = ("prompt", "backend", "model", "workdir", "session_id", "approval_mode",
               "sandbox_mode", "system_prompt", "extra_flags", "metadata", "tags", "parent_id")


@dataclass
class PreparedRun:
    """A request resolved and checked: which backend, where, with which argv and limits."""

    request: PromptRequest
    backend: Backend
    model: str | None  # as requested (alias kept), None = backend default
    resolved_model: str | None  # what the CLI is told (--model), None = no flag
    workdir: str
    invocation: Invocation
    session: Session | None  # an existing session being continued
    ephemeral: bool
    timeout: float | None
    placement: Placement | None = None  # where it runs (None: a dry run runs nowhere)

    @property
    def command_line(self) -> str:
        """The argv as it would run, the binary shown by the path it resolves to."""
        return self.invocation.display(self.backend.executable_path())


@dataclass
class RunResult:
    """The end of one run, as every edge reports it."""

    backend: str
    model: str | None
    session_id: str | None
    backend_session_id: str | None
    status: RunStatus
    exit_code: int | None
    output: str
    error: str | None
    token_usage: TokenUsage
    duration_ms: int
    working_dir: str
    command: list[str]
    dry_run: bool = False
    stderr_tail: str = ""
    # The agent host running it went away (execution.mode celery): a failure that jobs
    # report as ``lost``, never re-run.
    lost: bool = False
    notice: str | None = None  # how the run differs from the request (host fallback)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.OK

    def to_dict(self) -> dict[str, Any]:
        data = {
            "session_id": self.session_id,
            "backend": self.backend,
            "model": self.model,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
            "output": self.output,
            "token_usage": self.token_usage.to_dict(),
            "backend_session_id": self.backend_session_id,
            "working_dir": self.working_dir,
        }
        if self.error:
            data["error"] = self.error
        if self.notice:
            data["notice"] = self.notice
        return data
