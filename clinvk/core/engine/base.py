"""The engine: one per process (or per app), shared by all its threads.

Every edge builds a :class:`PromptRequest`, calls :meth:`Engine.prepare` (which raises a
:class:`~clinvk.core.errors.ClinvkError` for anything the caller got wrong, before any
process starts), then either :meth:`Engine.execute` for a result or :meth:`Engine.start`
for a :class:`RunHandle` whose events it streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from clinvk.core.backends import Registry
from clinvk.core.engine.accounting import UsageAccounting
from clinvk.core.engine.handle import RunHandle
from clinvk.core.engine.prepare import prepare_run
from clinvk.core.engine.requests import PreparedRun, PromptRequest, RunResult
from clinvk.core.engine.slots import EngineHooks, RunSlots
from clinvk.core.events import Event
from clinvk.core.execution import Runner, make_runner
from clinvk.core.process import Limits

if TYPE_CHECKING:
    from clinvk.core.config import Config
    from clinvk.core.store import Store


class Engine:
    """Everything a run needs: configuration, store, backends, run slots, metrics hooks."""

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        server_mode: bool = False,
        hooks: EngineHooks | None = None,
        registry: Registry | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.config = config
        # Where CLIs run: here (the default) or on agent hosts (clinvk.core.execution).
        self.runner = runner or make_runner(config)
        self.store = store
        # A server enforces the workdir policy and the privilege ceiling, caps timeouts
        # and concurrent runs, and runs CLIs at a lower priority; the CLI does not.
        self.server_mode = server_mode
        self.hooks = hooks or EngineHooks()
        self.registry = registry or Registry.from_config(config)
        self.accounting = UsageAccounting(config, store, lambda: self.hooks,
                                          server_mode=server_mode)
        srv = config.server
        self.slots = RunSlots(srv.max_concurrent_runs if server_mode else 0,
                              srv.queue_timeout_secs)

    def prepare(self, req: PromptRequest) -> PreparedRun:
        """Resolve and validate everything; raise before any process or record exists."""
        return prepare_run(self, req)

    def start(self, prepared: PreparedRun) -> RunHandle:
        """Claim a run slot and the session's busy lease, create the session record and
        start the CLI; read it with :meth:`RunHandle.events`, and ``close()`` a handle that
        is not read (that stops the CLI and gives slot and lease back).

        Raises ``Saturated``, ``SessionBusy`` or ``StoreError`` here, before a caller
        commits to a response (a stream's 200), so that those map to a clean status code.
        """
        return RunHandle(self, prepared)

    def execute(
        self, prepared: PreparedRun, on_event: Callable[[Event], None] | None = None
    ) -> RunResult:
        """Run a prepared run to its end, passing each event to ``on_event``."""
        handle = self.start(prepared)
        try:
            for event in handle.events():
                if event is not None and on_event is not None:
                    on_event(event)
        finally:
            handle.close()
        assert handle.result is not None
        return handle.result

    def run(self, req: PromptRequest, on_event: Callable[[Event], None] | None = None
            ) -> RunResult:
        """Prepare and execute in one call."""
        return self.execute(self.prepare(req), on_event)

    def limits(self, prepared: PreparedRun) -> Limits:
        """The process limits of a run: its timeout and the configured caps."""
        srv = self.config.server
        return Limits(
            timeout=prepared.timeout,
            idle_timeout=srv.backend_idle_timeout_secs or None,
            max_output_bytes=srv.max_output_bytes,
            max_line_bytes=srv.max_line_bytes,
            nice=srv.backend_nice if self.server_mode else 0,
        )
