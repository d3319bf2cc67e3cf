"""One run in progress: claim → spawn → stream events → classify → record → give back.

A :class:`RunHandle` holds a run slot and, for a session's turn, the session's busy lease
from its construction until :meth:`RunHandle.close`; :meth:`RunHandle.events` closes it
after the last event, and a caller that never reads closes it itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from clinvk.core import events
from clinvk.core.engine.outcome import classify, reported_exit_code, terminal_event
from clinvk.core.engine.recording import TurnRecorder
from clinvk.core.engine.requests import RunResult
from clinvk.core.errors import BackendUnavailable
from clinvk.core.events import Event, TokenUsage
from clinvk.core.execution import BackendProcess
from clinvk.core.types import EndReason, RunMiss, RunStatus

if TYPE_CHECKING:
    from clinvk.core.backends.base import StreamParser
    from clinvk.core.engine.base import Engine
    from clinvk.core.engine.requests import PreparedRun
    from clinvk.core.store import Session



class RunHandle:
    """One run in progress: iterate :meth:`events`, :meth:`cancel` from anywhere."""

    def __init__(self, engine: Engine, prepared: PreparedRun) -> None:
        self.engine = engine
        self.prepared = prepared
        self.result: RunResult | None = None
        self._turn = TurnRecorder(engine, prepared)
        self._process: BackendProcess | None = None
        self._cancel_reason: EndReason | None = None
        self._closed = False
        self._slot = False
        self._sequence = 0
        self._spawn_error: BackendUnavailable | None = None
        self._started = 0.0
        self._metered = False
        if not prepared.request.dry_run:
            self._claim()
        try:
            self._session_id = self._turn.open()
            if not prepared.request.dry_run:
                # Started here, not on the first read: a stream's response begins with
                # the CLI already booting (the order is measured in docs/performance.md).
                self._spawn()
        except BaseException:
            if self._process is not None:
                self._process.abort()
            self._release()
            raise

    @property
    def session(self) -> Session | None:
        """The session this run continues or created (None for an ephemeral run)."""
        return self._turn.session

    @property
    def session_id(self) -> str | None:
        """The session this run records into (None for an ephemeral run)."""
        return self._session_id

    # -- slot, lease, process -----------------------------------------------------------------

    def _record_end(self) -> None:
        """The run's result is final: its ledger row, then its session turn."""
        assert self.result is not None
        self.engine.accounting.account(self.prepared, self.result)
        self._turn.record(self.result)

    def _claim(self) -> None:
        self.engine.accounting.admit(self.prepared)  # a spent budget refuses before all else
        self._turn.claim()
        try:
            waited = self.engine.slots.acquire()
            self._slot = True
            self.engine.hooks.queue_wait(waited)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.engine.slots.release()
        self._turn.release()

    def _spawn(self) -> None:
        prepared, engine = self.prepared, self.engine
        process = engine.runner.spawn(prepared, engine.limits(prepared), self._session_id)
        self._started = time.monotonic()
        engine.hooks.run_started(prepared.backend.name)
        self._metered = True
        try:
            process.start()
        except BackendUnavailable as exc:
            self._spawn_error = exc  # reported (and recorded) when the run is read
            return
        except BaseException:  # not started at all (a remote run found no host)
            self._run_finished(RunMiss.NOT_STARTED)
            raise
        self._process = process

    def _run_finished(self, status: str) -> None:
        """Close the metrics of a started run (exactly once)."""
        if self._metered:
            self._metered = False
            elapsed = time.monotonic() - self._started if self._started else 0.0
            self.engine.hooks.run_finished(self.prepared.backend.name, status, elapsed)

    def cancel(self, reason: EndReason = EndReason.CANCELLED) -> None:
        self._cancel_reason = reason
        if self._process is not None:
            self._process.cancel(reason)

    def close(self) -> None:
        """Idempotent: stop the process if still running and give back slot and lease."""
        if self._closed:
            return
        self._closed = True
        if self._process is not None and self._process.outcome is None:
            self._process.abort(EndReason.CANCELLED)
        self._run_finished(RunStatus.CANCELLED)
        self._release()

    # -- events -------------------------------------------------------------------------------

    def events(self, heartbeat: float | None = None) -> Iterator[Event | None]:
        """Unified events of the run; exactly one terminal event (done or error) comes last.

        ``None`` items are heartbeats (see :meth:`ProcessRun.lines`).
        """
        try:
            if self.prepared.request.dry_run:
                yield from self._dry_run_events()
                return
            process = self._started_process()
            parser = self.prepared.backend.new_stream_parser(
                model=self.prepared.resolved_model, workdir=self.prepared.workdir)
            yield from self._stream(process, parser, heartbeat)
            self._finish(process, parser)
            assert self.result is not None
            yield self._stamp(terminal_event(self.result))
        finally:
            self.close()

    def _stamp(self, event: Event) -> Event:
        self._sequence += 1
        event.backend = self.prepared.backend.name
        event.session_id = self._session_id
        event.at = time.time()
        event.sequence = self._sequence
        return event

    def _dry_run_events(self) -> Iterator[Event]:
        prepared = self.prepared
        self.result = self._result(
            status=RunStatus.OK, exit_code=0, duration_ms=0,
            output=f"Would execute: {prepared.command_line}", error=None,
            usage=TokenUsage(), backend_session_id=None, model=prepared.resolved_model)
        yield self._stamp(events.init(None, prepared.resolved_model, prepared.workdir))
        yield self._stamp(events.message(self.result.output, partial=False))
        yield self._stamp(terminal_event(self.result))

    def _started_process(self) -> BackendProcess:
        """The running process, or the reason there is none (recorded, then raised)."""
        if self._spawn_error is not None:
            self.result = self._result(
                status=RunStatus.FAILED, exit_code=None, duration_ms=0, output="",
                error=self._spawn_error.message, usage=TokenUsage(), backend_session_id=None,
                model=self.prepared.resolved_model)
            self._record_end()
            self._run_finished(RunMiss.UNAVAILABLE)
            raise self._spawn_error
        process = self._process
        assert process is not None
        if self._cancel_reason:
            process.abort(self._cancel_reason)
            raise BackendUnavailable("run was cancelled before its output was read")
        return process

    def _stream(self, process: BackendProcess, parser: StreamParser,
                heartbeat: float | None) -> Iterator[Event | None]:
        """The parsed events as the CLI prints them, with keep-alives while it is silent."""
        try:
            last_out = time.monotonic()
            early_tried = False
            for line in process.lines(heartbeat=heartbeat):
                produced = parser.feed(line) if line is not None else []
                for event in produced:
                    yield self._stamp(event)
                if parser.completed and not early_tried:
                    early_tried = True
                    self._turn.record_early(parser)
                now = time.monotonic()
                if produced:
                    last_out = now
                elif heartbeat and (line is None or now - last_out >= heartbeat):
                    # The CLI is silent, or prints lines that are no events (status lines,
                    # tool-input fragments): the caller still needs its keep-alive.
                    last_out = now
                    yield None
        except BaseException:
            # Interrupted (Ctrl-C, client gone, shutdown): the process group is already
            # gone; keep the record honest before letting the interruption through.
            self._record_interrupted(parser)
            raise

    def _record_interrupted(self, parser: StreamParser) -> None:
        interrupted = parser.finish(None, "")
        self.result = self._result(
            status=RunStatus.CANCELLED, exit_code=None,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            output=interrupted.output, error="run was interrupted",
            usage=interrupted.usage, backend_session_id=interrupted.backend_session_id,
            model=interrupted.model or self.prepared.resolved_model)
        self._run_finished(RunStatus.CANCELLED)
        self._record_end()

    def _finish(self, process: BackendProcess, parser: StreamParser) -> None:
        """Classify the ended process, record the turn, clean up an ephemeral session."""
        prepared = self.prepared
        outcome = process.outcome
        assert outcome is not None
        parsed = parser.finish(outcome.exit_code, outcome.stderr_tail, expect_json=True)
        lost = outcome.reason == EndReason.LOST
        status, error = classify(outcome.reason, outcome.exit_code,
                                 outcome.stderr_tail if lost else parsed.error,
                                 prepared.timeout)
        self.result = self._result(
            status=status, exit_code=reported_exit_code(status, outcome.exit_code),
            duration_ms=outcome.duration_ms, output=parsed.output, error=error,
            usage=parsed.usage, backend_session_id=parsed.backend_session_id,
            model=parsed.model or prepared.resolved_model, stderr=outcome.stderr_tail)
        self.result.lost = lost
        self._run_finished(EndReason.LOST if lost else status)
        self._record_end()
        if prepared.ephemeral:
            self.engine.runner.cleanup_ephemeral(prepared, process, parsed.backend_session_id)

    def _result(self, *, status: RunStatus, exit_code: int | None, duration_ms: int,
                output: str, error: str | None, usage: TokenUsage,
                backend_session_id: str | None, model: str | None,
                stderr: str = "") -> RunResult:
        prepared = self.prepared
        return RunResult(
            backend=prepared.backend.name,
            model=model,
            session_id=self._session_id,
            backend_session_id=backend_session_id,
            status=status,
            exit_code=exit_code,
            output=output,
            error=error,
            token_usage=usage,
            duration_ms=duration_ms,
            working_dir=prepared.workdir,
            command=list(prepared.invocation.argv),
            dry_run=prepared.request.dry_run,
            stderr_tail=stderr,
            notice=prepared.placement.notice if prepared.placement else None,
        )
