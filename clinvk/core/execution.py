"""Where a backend invocation runs: the engine's one seam between an argv and its lines.

The engine prepares a run (argv, prompt, workdir, limits), asks its :class:`Runner` where
it goes (:meth:`Runner.place`) and for a process to read (:meth:`Runner.spawn`); the
:class:`BackendProcess` it gets yields the CLI's stdout lines and ends with a
:class:`~clinvk.core.process.ProcessOutcome`. Parsing, session records and metrics stay in
the engine, so every route (sync, streams, vendor APIs, orchestration, jobs) is the same
whether the CLI runs here (:class:`LocalRunner`, the default) or on an agent host
(``clinvk.core.remote.client.RemoteRunner``, loaded only for ``execution.mode: celery``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from clinvk.core.errors import BackendUnavailable
from clinvk.core.process import Limits, ProcessOutcome, ProcessRun
from clinvk.core.types import EndReason, ExecutionMode

if TYPE_CHECKING:
    from clinvk.core.backends import Backend
    from clinvk.core.config import Config
    from clinvk.core.engine import PreparedRun
    from clinvk.core.store import Session


class BackendProcess(Protocol):
    """One CLI run as the engine reads it (:class:`~clinvk.core.process.ProcessRun`'s
    surface); ``outcome`` is set once ``lines`` is exhausted."""

    outcome: ProcessOutcome | None

    def start(self) -> None: ...

    def lines(self, heartbeat: float | None = None) -> Iterator[str | None]: ...

    def cancel(self, reason: EndReason = EndReason.CANCELLED) -> None: ...

    def abort(self, reason: EndReason = EndReason.CANCELLED) -> None: ...


@dataclass(frozen=True)
class Placement:
    """Where a run goes, decided while it is prepared (before anything starts)."""

    queue: str | None = None  # the queue of a remote run; None = this process
    resume: bool = True  # False: the session's backend state is out of reach, start anew
    notice: str | None = None  # said to the caller when the run differs from what it asked


class Runner(Protocol):
    def place(self, backend: Backend, session: Session | None) -> Placement:
        """Raise (``BackendUnavailable``, ``HostUnavailable``, ``BrokerUnavailable``) when
        the run cannot go anywhere; called for every run that is not a dry run."""

    def spawn(self, prepared: PreparedRun, limits: Limits,
              session_id: str | None) -> BackendProcess:
        """A process for the prepared run, not started yet."""

    def cleanup_ephemeral(self, prepared: PreparedRun, process: BackendProcess,
                          backend_session_id: str | None) -> None:
        """Remove what an ephemeral run's CLI left where it ran."""

    def withdraw(self, run_keys: list[str]) -> None:
        """The named runs (a cancelled job's) never start if they have not yet, and stop
        if they have; from any gateway process."""

    def available(self, backend: Backend) -> bool:
        """Whether a new run of ``backend`` could start now (for /health)."""

    def status(self) -> dict[str, Any] | None:
        """Hosts and queue depths for /health and /metrics (None: nothing to report)."""


class LocalRunner:
    """CLIs run as children of this process (the embedded default)."""

    def place(self, backend: Backend, session: Session | None) -> Placement:
        if not backend.available:
            raise BackendUnavailable(
                f"backend {backend.name!r} is not available: {backend.command!r} was not "
                "found or is not executable")
        return Placement()

    def spawn(self, prepared: PreparedRun, limits: Limits,
              session_id: str | None) -> BackendProcess:
        invocation = prepared.invocation
        return ProcessRun(invocation.argv, stdin=invocation.stdin, env=invocation.env,
                          cwd=prepared.workdir, limits=limits)

    def cleanup_ephemeral(self, prepared: PreparedRun, process: BackendProcess,
                          backend_session_id: str | None) -> None:
        prepared.backend.cleanup_ephemeral(backend_session_id, prepared.workdir,
                                           prepared.invocation.env)

    def withdraw(self, run_keys: list[str]) -> None:
        """Nothing to do: a local run starts at once, and its job's cancel flag stops it."""

    def available(self, backend: Backend) -> bool:
        return backend.reported_available()

    def status(self) -> dict[str, Any] | None:
        return None


def make_runner(config: Config) -> Runner:
    if config.execution.mode == ExecutionMode.CELERY:
        from clinvk.core.remote.client import RemoteRunner  # celery only when asked for

        return RemoteRunner(config)
    return LocalRunner()
