"""The engine: prepare a run, execute it, record the turn.

Both edges (click CLI and Flask server) build a :class:`PromptRequest`, call
:meth:`Engine.prepare` (which raises a :class:`~clinvk.core.errors.ClinvkError` for anything a
caller got wrong, before any process starts), then either :meth:`Engine.execute` for a
result or :meth:`Engine.start` for a :class:`RunHandle` whose events they stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from clinvk.core import events, policy
from clinvk.core.backends import Backend, Registry, RunOptions
from clinvk.core.backends.base import APPROVAL_MODES, SANDBOX_MODES, Invocation, StreamParser
from clinvk.core.errors import (
    BackendUnavailable,
    InvalidRequest,
    PolicyViolation,
    Saturated,
    StoreError,
)
from clinvk.core.events import Event, TokenUsage
from clinvk.core.execution import BackendProcess, Placement, Runner, make_runner
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.process import (
    CANCELLED,
    EXITED,
    IDLE_TIMEOUT,
    LINE_LIMIT,
    LOST,
    OUTPUT_LIMIT,
    TIMEOUT,
    Limits,
)
from clinvk.core.textcheck import check_text

if TYPE_CHECKING:
    from clinvk.core.config import Config
    from clinvk.core.sessions import Session, SessionStore

# Result statuses.
OK = "ok"
FAILED = "failed"
TIMED_OUT = "timeout"
INTERRUPTED = "cancelled"


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


@dataclass
class PreparedRun:
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
    backend: str
    model: str | None
    session_id: str | None
    backend_session_id: str | None
    status: str
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
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        data = {
            "session_id": self.session_id,
            "backend": self.backend,
            "model": self.model,
            "status": self.status,
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


class EngineHooks:
    """Observation points for metrics; the server overrides them, the CLI does not care."""

    def run_started(self, backend: str) -> None: ...

    def run_finished(self, backend: str, status: str, seconds: float) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def session_created(self, backend: str) -> None: ...


class RunSlots:
    """A cap on concurrent backend runs with a bounded wait for a free slot."""

    def __init__(self, limit: int, queue_timeout: float) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self._sem = threading.BoundedSemaphore(limit) if limit > 0 else None
        self._in_use = 0
        self._count_lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        return self._in_use

    def acquire(self) -> float:
        started = time.monotonic()
        if self._sem is not None and not self._sem.acquire(timeout=max(self.queue_timeout, 0.0)):
            raise Saturated(
                f"all {self.limit} backend run slots are busy; try again later",
                retry_after=max(1, int(self.queue_timeout) or 1),
            )
        with self._count_lock:
            self._in_use += 1
        return time.monotonic() - started

    def release(self) -> None:
        with self._count_lock:
            self._in_use -= 1
        if self._sem is not None:
            self._sem.release()


_TEXT_FIELDS = ("prompt", "backend", "model", "workdir", "session_id", "approval_mode",
                "sandbox_mode", "system_prompt", "extra_flags", "metadata", "tags", "parent_id")


def _check_request_text(req: PromptRequest) -> None:
    """Every text a request carries must be passable to a CLI and storable (textcheck)."""
    for name in _TEXT_FIELDS:
        value = getattr(req, name)
        if value is not None:
            check_text(value, "extra" if name == "extra_flags" else name)


class Engine:
    """Everything a run needs, shared by all threads of a process."""

    def __init__(
        self,
        config: Config,
        store: SessionStore | None = None,
        *,
        server_mode: bool = False,
        hooks: EngineHooks | None = None,
        registry: Registry | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.config = config
        self.runner = runner or make_runner(config)
        self.store = store
        self.server_mode = server_mode
        self.hooks = hooks or EngineHooks()
        self.registry = registry or Registry.from_config(config)
        srv = config.server
        self.slots = RunSlots(srv.max_concurrent_runs if server_mode else 0,
                              srv.queue_timeout_secs)

    # -- preparation --------------------------------------------------------------------------

    def prepare(self, req: PromptRequest) -> PreparedRun:
        """Resolve and validate everything; raise before any process or record exists."""
        if not isinstance(req.prompt, str) or not req.prompt.strip():
            raise InvalidRequest("prompt is required and must not be empty", field="prompt")
        _check_request_text(req)
        if self.config.unified_flags.dry_run and not req.dry_run:
            req = replace(req, dry_run=True)  # the operator made every run a dry run
        session = None
        if req.session_id:
            session = self._require_store().get(req.session_id, visible_to=req.principal)
            if req.backend and req.backend.strip().lower() != session.backend:
                raise InvalidRequest(
                    f"session {session.id} belongs to backend {session.backend!r}, "
                    f"not {req.backend!r}", field="backend")
            backend = self.registry.get(session.backend)
        else:
            backend = self.registry.get(req.backend or self.config.default_backend)
        bcfg = self.config.backends.get(backend.name)
        flags = self.config.unified_flags

        approval = self._choice(req.approval_mode, bcfg and bcfg.approval_mode,
                                flags.approval_mode, APPROVAL_MODES, "approval_mode")
        sandbox = self._choice(req.sandbox_mode, bcfg and bcfg.sandbox_mode,
                               flags.sandbox_mode, SANDBOX_MODES, "sandbox_mode")
        max_turns = req.max_turns if req.max_turns is not None else (flags.max_turns or None)
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 0):
            raise InvalidRequest("max_turns must be a non-negative integer", field="max_turns")
        extra = list(req.extra_flags or [])
        if not all(isinstance(x, str) for x in extra):
            raise InvalidRequest("extra must be a list of strings", field="extra")
        placement = None if req.dry_run else self.runner.place(backend, session)

        if session is not None:
            workdir = session.working_dir
            if req.workdir and policy.resolve_workdir(req.workdir) != workdir:
                raise InvalidRequest(
                    f"workdir cannot change when continuing a session (it runs in {workdir})",
                    field="workdir")
        else:
            workdir = policy.resolve_workdir(req.workdir)
        if self.server_mode:
            srv = self.config.server
            policy.check_workdir(workdir, allowed=srv.allowed_workdir_prefixes,
                                 blocked=srv.blocked_workdir_prefixes,
                                 allow_system_roots=srv.allow_system_root_workdirs)
            policy.check_privilege(approval, sandbox, allow_dangerous=srv.allow_dangerous_modes)
            reason = backend.check_extra_flags(extra, allow_dangerous=srv.allow_dangerous_modes)
            if reason:
                raise PolicyViolation(reason, field="extra")
        if bcfg is not None:
            extra = list(bcfg.extra_flags) + extra
            if bcfg.allowed_tools and backend.name == "claude":
                extra = ["--allowedTools", bcfg.allowed_tools, *extra]

        model = req.model or (session.model if session else None) or None
        ephemeral = bool(req.ephemeral)
        if session is not None and ephemeral:
            raise InvalidRequest("ephemeral cannot be combined with session_id", field="ephemeral")
        system_prompt = req.system_prompt or (bcfg.system_prompt if bcfg else "") or None
        opts = RunOptions(
            prompt=req.prompt,
            workdir=workdir,
            model=model,
            approval_mode=approval,
            sandbox_mode=sandbox,
            max_turns=max_turns or None,
            system_prompt=system_prompt,
            verbose=bool(req.verbose or flags.verbose),
            ephemeral=ephemeral,
            extra_flags=extra,
            resume_id=(session.backend_session_id
                       if session and (placement is None or placement.resume) else None),
        )
        invocation = backend.build_invocation(opts)
        invocation.env = backend.child_env()
        return PreparedRun(
            request=req,
            backend=backend,
            model=model,
            resolved_model=backend.resolve_model(model),
            workdir=workdir,
            invocation=invocation,
            session=session,
            ephemeral=ephemeral,
            timeout=self._timeout(req, bcfg),
            placement=placement,
        )

    @staticmethod
    def _choice(requested: str | None, backend_default: str | None, unified: str,
                choices: tuple[str, ...], field_name: str) -> str:
        value = requested or (backend_default if backend_default not in (None, "", "default")
                              else None) or unified or "default"
        if value not in choices:
            raise InvalidRequest(
                f"{field_name} must be one of {', '.join(choices)}; got {value!r}",
                field=field_name)
        return value

    def _timeout(self, req: PromptRequest, bcfg: Any) -> float | None:
        requested = req.timeout_secs
        if requested is not None and (not isinstance(requested, int | float) or requested <= 0):
            raise InvalidRequest("timeout_secs must be a positive number", field="timeout_secs")
        backend_default = (bcfg.timeout_secs if bcfg else 0) or None
        if self.server_mode:
            ceiling = self.config.server.request_timeout_secs or None
            if requested and ceiling and requested > ceiling:
                raise InvalidRequest(
                    f"timeout_secs must not exceed the server maximum of {ceiling} s",
                    field="timeout_secs")
            return requested or backend_default or ceiling
        return requested or backend_default or (
            self.config.unified_flags.command_timeout_secs or None)

    def _require_store(self) -> SessionStore:
        if self.store is None:
            raise StoreError("no session store is configured")
        return self.store

    # -- execution ----------------------------------------------------------------------------

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
        return self.execute(self.prepare(req), on_event)

    def limits(self, prepared: PreparedRun) -> Limits:
        srv = self.config.server
        return Limits(
            timeout=prepared.timeout,
            idle_timeout=srv.backend_idle_timeout_secs or None,
            max_output_bytes=srv.max_output_bytes,
            max_line_bytes=srv.max_line_bytes,
            nice=srv.backend_nice if self.server_mode else 0,
        )


class RunHandle:
    """One run in progress: iterate :meth:`events`, :meth:`cancel` from anywhere."""

    def __init__(self, engine: Engine, prepared: PreparedRun) -> None:
        self.engine = engine
        self.prepared = prepared
        self.result: RunResult | None = None
        self.session: Session | None = prepared.session
        self._process: BackendProcess | None = None
        self._cancel_reason: str | None = None
        self._closed = False
        self._slot = False
        self._lease = None
        self._sequence = 0
        self._spawn_error: BackendUnavailable | None = None
        self._started = 0.0
        self._metered = False
        # (usage, backend_session_id, model) of a turn recorded before the exit
        self._early: tuple[TokenUsage | None, str | None, str | None] | None = None
        if not prepared.request.dry_run:
            self._claim()
        try:
            self._session_id = self._open_session()
            if not prepared.request.dry_run:
                # Started here, not on the first read: a stream's response begins with
                # the CLI already booting. (Writing the session row after the spawn, to
                # overlap it with the boot, measured no faster: right after the spawn the
                # new process shares the spawning CPU; bench/ab_overhead.py.)
                self._spawn()
        except BaseException:
            if self._process is not None:
                self._process.abort()
            self._release()
            raise

    @property
    def session_id(self) -> str | None:
        """The session this run records into (None for an ephemeral run)."""
        return self._session_id

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
            self._run_finished("not_started")
            raise
        self._process = process

    def _run_finished(self, status: str) -> None:
        """Close the metrics of a started run (exactly once)."""
        if self._metered:
            self._metered = False
            elapsed = time.monotonic() - self._started if self._started else 0.0
            self.engine.hooks.run_finished(self.prepared.backend.name, status, elapsed)

    def _claim(self) -> None:
        store = self.engine.store
        if self.session is not None and store is not None:
            self._lease = store.busy(self.session.id, ttl_seconds=self._lease_ttl())
            self._lease.__enter__()
        try:
            waited = self.engine.slots.acquire()
            self._slot = True
            self.engine.hooks.queue_wait(waited)
        except BaseException:
            self._release()
            raise

    def _lease_ttl(self) -> float:
        # The lease outlives the longest the run may take, so it never expires mid-run.
        return (self.prepared.timeout or 24 * 3600) + 60

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.engine.slots.release()
        if self._lease is not None:
            lease, self._lease = self._lease, None
            lease.__exit__(None, None, None)

    def cancel(self, reason: str = CANCELLED) -> None:
        self._cancel_reason = reason
        if self._process is not None:
            self._process.cancel(reason)

    def close(self) -> None:
        """Idempotent: stop the process if still running and give back slot and lease."""
        if self._closed:
            return
        self._closed = True
        if self._process is not None and self._process.outcome is None:
            self._process.abort(CANCELLED)
        self._run_finished(INTERRUPTED)
        self._release()

    # -- streaming ----------------------------------------------------------------------------

    def _stamp(self, event: Event, session_id: str | None) -> Event:
        self._sequence += 1
        event.backend = self.prepared.backend.name
        event.session_id = session_id
        event.timestamp = events.utc_timestamp()
        event.sequence = self._sequence
        return event

    def events(self, heartbeat: float | None = None) -> Iterator[Event | None]:
        """Unified events of the run; exactly one terminal event (done or error) comes last.

        ``None`` items are heartbeats (see :meth:`ProcessRun.lines`).
        """
        try:
            yield from self._events(heartbeat)
        finally:
            self.close()

    def _events(self, heartbeat: float | None) -> Iterator[Event | None]:
        prepared = self.prepared
        backend = prepared.backend
        req = prepared.request
        session_id = self._session_id
        if req.dry_run:
            self.result = self._result(
                session_id, status=OK, exit_code=0, duration_ms=0,
                output=f"Would execute: {prepared.command_line}", error=None,
                usage=TokenUsage(), backend_session_id=None, model=prepared.resolved_model)
            self._record(self.result, dry_run=True)
            yield self._stamp(events.init(None, prepared.resolved_model, prepared.workdir),
                              session_id)
            yield self._stamp(events.message(self.result.output, partial=False), session_id)
            yield self._stamp(self._done_event(self.result), session_id)
            return
        if self._spawn_error is not None:
            self.result = self._result(session_id, status=FAILED, exit_code=None,
                                       duration_ms=0, output="", error=self._spawn_error.message,
                                       usage=TokenUsage(), backend_session_id=None,
                                       model=prepared.resolved_model)
            self._record(self.result)
            self._run_finished("unavailable")
            raise self._spawn_error
        process = self._process
        assert process is not None
        if self._cancel_reason:
            process.abort(self._cancel_reason)
            raise BackendUnavailable("run was cancelled before its output was read")
        parser = backend.new_stream_parser(model=prepared.resolved_model,
                                           workdir=prepared.workdir)
        try:
            last_out = time.monotonic()
            early_tried = False
            for line in process.lines(heartbeat=heartbeat):
                produced = parser.feed(line) if line is not None else []
                for event in produced:
                    yield self._stamp(event, session_id)
                if parser.completed and not early_tried:
                    early_tried = True
                    self._record_early(parser)
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
            interrupted = parser.finish(None, "")
            self.result = self._result(
                session_id, status=INTERRUPTED, exit_code=None,
                duration_ms=int((time.monotonic() - self._started) * 1000),
                output=interrupted.output, error="run was interrupted",
                usage=interrupted.usage, backend_session_id=interrupted.backend_session_id,
                model=interrupted.model or prepared.resolved_model)
            self._run_finished(INTERRUPTED)
            self._record(self.result)
            raise
        outcome = process.outcome
        assert outcome is not None
        parsed = parser.finish(outcome.exit_code, outcome.stderr_tail, expect_json=True)
        lost = outcome.reason == LOST
        status, error = self._classify(outcome.reason, outcome.exit_code,
                                       outcome.stderr_tail if lost else parsed.error,
                                       prepared.timeout)
        self.result = self._result(
            session_id, status=status, exit_code=self._exit_code(status, outcome.exit_code),
            duration_ms=outcome.duration_ms, output=parsed.output, error=error,
            usage=parsed.usage, backend_session_id=parsed.backend_session_id,
            model=parsed.model or prepared.resolved_model, stderr=outcome.stderr_tail)
        self.result.lost = lost
        self._run_finished(LOST if lost else status)
        self._record(self.result)
        if prepared.ephemeral:
            self.engine.runner.cleanup_ephemeral(prepared, process, parsed.backend_session_id)
        if status == OK:
            yield self._stamp(self._done_event(self.result), session_id)
        else:
            code = "host_lost" if self.result.lost else (
                status if status != FAILED else "backend_error")
            yield self._stamp(Event(events.ERROR, {
                "code": code,
                "message": error,
                "exit_code": self.result.exit_code,
                "output": self.result.output,
                "token_usage": self.result.token_usage.to_dict(),
                "duration_ms": self.result.duration_ms,
            }), session_id)

    @staticmethod
    def _classify(reason: str, exit_code: int | None, parsed_error: str | None,
                  timeout: float | None) -> tuple[str, str | None]:
        if reason == TIMEOUT:
            return TIMED_OUT, f"backend timed out after {timeout:g} s"
        if reason == IDLE_TIMEOUT:
            return TIMED_OUT, "backend produced no output for too long (idle timeout)"
        if reason == CANCELLED:
            return INTERRUPTED, "run was cancelled"
        if reason == OUTPUT_LIMIT:
            return FAILED, "backend output exceeded server.max_output_bytes"
        if reason == LINE_LIMIT:
            return FAILED, "a backend output line exceeded server.max_line_bytes"
        if reason == LOST:
            return FAILED, (f"the agent host running this went away ({parsed_error}); the run "
                            "is lost and not re-run")
        assert reason == EXITED
        if parsed_error:
            return FAILED, parsed_error
        if exit_code not in (0, None):
            return FAILED, f"backend exited with code {exit_code}"
        return OK, None

    @staticmethod
    def _exit_code(status: str, exit_code: int | None) -> int | None:
        if status == FAILED and exit_code == 0:
            return 1  # the backend reported an error but exited 0
        return exit_code

    def _done_event(self, result: RunResult) -> Event:
        return Event(events.DONE, {
            "token_usage": result.token_usage.to_dict(),
            "duration_ms": result.duration_ms,
            "exit_code": result.exit_code,
            "output": result.output,
            "model": result.model,
            "backend_session_id": result.backend_session_id,
        })

    # -- sessions -----------------------------------------------------------------------------

    def _open_session(self) -> str | None:
        prepared = self.prepared
        store = self.engine.store
        if prepared.ephemeral or store is None:
            return None
        if self.session is not None:
            return self.session.id
        req = prepared.request
        tags = list(dict.fromkeys([*self.engine.config.session.default_tags, *req.tags]))
        if not req.dry_run:  # the first turn is guarded like every other
            self._lease = store.new_lease(ttl_seconds=self._lease_ttl())
        self.session = store.create(
            owner=req.principal.owner,
            backend=prepared.backend.name,
            working_dir=prepared.workdir,
            model=prepared.model,
            initial_prompt=req.prompt,
            tags=tags,
            metadata=req.metadata,
            parent_id=req.parent_id,
            status="completed" if req.dry_run else "active",
            lease=self._lease,
        )
        self.engine.hooks.session_created(prepared.backend.name)
        return self.session.id

    def _record_early(self, parser: StreamParser) -> None:
        """Record the turn as soon as the CLI printed a successful result.

        A CLI takes a while to exit after its last line (the fake: ~8 ms; Node CLIs
        longer), and the request waits for that exit anyway; writing the turn meanwhile
        takes the session write off the response's critical path. :meth:`_record` then
        only amends it if the end differs (a non-zero exit, a kill, more usage). The same
        write gives the turn's busy lease back: the session's next turn may start once
        this one's result is recorded.
        """
        store = self.engine.store
        parsed = parser.result
        if self.session is None or store is None or parsed.is_error or parsed.error:
            return
        keep_usage = self.engine.config.session.store_token_usage
        usage = parsed.usage if keep_usage else None
        model = parsed.model or self.prepared.resolved_model
        try:
            store.record_turn(self.session.id, usage=usage, status="completed",
                              backend_session_id=parsed.backend_session_id, model=model,
                              release=self._lease)
        except StoreError:
            return  # the write after the exit tries again and reports the failure
        self._early = (usage, parsed.backend_session_id, model)

    def _record(self, result: RunResult, *, dry_run: bool = False) -> None:
        store = self.engine.store
        if self.session is None or store is None or dry_run:
            return
        keep_usage = self.engine.config.session.store_token_usage
        usage = result.token_usage if keep_usage else None
        turns = 1
        if self._early is not None:
            early_usage = self._early[0]
            if result.ok and (usage, result.backend_session_id, result.model) == self._early:
                return
            turns = 0  # amend the turn already counted
            if usage is not None and early_usage is not None:
                usage = usage.since(early_usage)
        store.record_turn(
            self.session.id,
            usage=usage,
            backend_session_id=result.backend_session_id,
            status="completed" if result.ok else "error",
            error_message=result.error,
            model=result.model,
            turns=turns,
            release=self._lease,
        )

    def _result(self, session_id: str | None, *, status: str, exit_code: int | None,
                duration_ms: int, output: str, error: str | None, usage: TokenUsage,
                backend_session_id: str | None, model: str | None,
                stderr: str = "") -> RunResult:
        prepared = self.prepared
        return RunResult(
            backend=prepared.backend.name,
            model=model,
            session_id=session_id,
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
