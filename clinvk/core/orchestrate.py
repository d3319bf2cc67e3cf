"""parallel / chain / compare over the engine (docs/api.md, docs/cli.md).

Runs go through the same engine path as single prompts, always ephemeral. Preparation
errors of one task become that task's result instead of failing the whole job, so a
caller always gets one result per task, in input order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from clinvk.core.engine import Engine, PromptRequest, RunHandle, RunResult
from clinvk.core.errors import ClinvkError, InvalidRequest
from clinvk.core.events import Event
from clinvk.core.types import RunStatus, TaskState

PREVIOUS = "{{previous}}"

# Called as (index, state, outcome-or-None): TaskState.RUNNING, then the final status.
UpdateFn = Callable[[int, str, "TaskOutcome | None"], None]
# Called as (index, event) for every unified event of the task's run (from its thread).
EventFn = Callable[[int, Event], None]


@dataclass
class TaskOutcome:
    """One task's end: a run result, or the error that stopped it from starting."""

    index: int
    backend: str
    status: str
    result: RunResult | None = None
    error: str | None = None
    error_code: str | None = None
    name: str | None = None
    model: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.OK

    @property
    def output(self) -> str:
        return self.result.output if self.result else ""

    def to_dict(self) -> dict[str, Any]:
        if self.result is not None:
            data = self.result.to_dict()
        else:
            data = {"backend": self.backend, "model": self.model, "status": self.status,
                    "exit_code": None, "duration_ms": 0, "output": "",
                    "token_usage": None}
        data["status"] = self.status
        if self.error:
            data["error"] = self.error
        if self.error_code:
            data["error_code"] = self.error_code
        if self.name is not None:
            data["name"] = self.name
        data.pop("session_id", None)
        return data


@dataclass
class JobReport:
    outcomes: list[TaskOutcome]
    total_duration_ms: int

    @property
    def completed(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes
                   if o.status not in (RunStatus.OK, RunStatus.CANCELLED, TaskState.SKIPPED))

    @property
    def failed_steps(self) -> list[int]:
        """1-based positions of the tasks that ran and did not end ok (skipped ones aside)."""
        return [o.index + 1 for o in self.outcomes
                if o.status not in (RunStatus.OK, TaskState.SKIPPED)]

    @property
    def cancelled(self) -> int:
        return sum(1 for o in self.outcomes if o.status == RunStatus.CANCELLED)


def _outcome_from_result(index: int, result: RunResult, name: str | None) -> TaskOutcome:
    return TaskOutcome(index=index, backend=result.backend, status=result.status, result=result,
                       error=result.error, name=name, model=result.model)


def _outcome_from_error(index: int, req: PromptRequest, exc: ClinvkError,
                        name: str | None) -> TaskOutcome:
    return TaskOutcome(index=index, backend=req.backend or "", status=RunStatus.FAILED,
                       error=exc.message, error_code=exc.code, name=name, model=req.model)


def check_count(items: list[Any], limit: int, field_name: str) -> None:
    if not items:
        raise InvalidRequest(f"{field_name} must not be empty", field=field_name)
    if limit and len(items) > limit:
        raise InvalidRequest(
            f"{field_name} has {len(items)} entries; the limit is {limit}", field=field_name)


class Cancellation:
    """The runs of one job, so that fail-fast (or the caller) can stop all of them at once;
    runs that have not started yet then never start."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._handles: set[RunHandle] = set()
        self._lock = threading.Lock()

    def add(self, handle: RunHandle) -> bool:
        with self._lock:
            if self.cancelled.is_set():
                return False
            self._handles.add(handle)
            return True

    def discard(self, handle: RunHandle) -> None:
        with self._lock:
            self._handles.discard(handle)

    def cancel_all(self) -> None:
        with self._lock:
            self.cancelled.set()
            handles = list(self._handles)
        for handle in handles:
            handle.cancel()


def _run_one(engine: Engine, index: int, req: PromptRequest, *, name: str | None = None,
             canceller: Cancellation | None = None,
             on_update: UpdateFn | None = None,
             on_event: EventFn | None = None) -> TaskOutcome:
    req = replace(req, ephemeral=True, session_id=None,
                  run_key=f"{req.run_key}.{index}" if req.run_key else None)
    if canceller is not None and canceller.cancelled.is_set():
        outcome = TaskOutcome(index=index, backend=req.backend or "", status=RunStatus.CANCELLED,
                              error="cancelled before it started", name=name,
                              model=req.model)
        if on_update:
            on_update(index, outcome.status, outcome)
        return outcome
    if on_update:
        on_update(index, TaskState.RUNNING, None)
    try:
        handle = engine.start(engine.prepare(req))
    except ClinvkError as exc:
        outcome = _outcome_from_error(index, req, exc, name)
    else:
        if canceller is not None and not canceller.add(handle):
            handle.cancel()
        try:
            for event in handle.events():
                if on_event is not None and event is not None:
                    on_event(index, event)
        except ClinvkError as exc:
            outcome = _outcome_from_error(index, req, exc, name)
        else:
            assert handle.result is not None
            outcome = _outcome_from_result(index, handle.result, name)
        finally:
            handle.close()
            if canceller is not None:
                canceller.discard(handle)
    if on_update:
        on_update(index, outcome.status, outcome)
    return outcome


def parallel_workers(engine: Engine, requests: list[PromptRequest],
                     max_parallel: int | None) -> int:
    """How many tasks run at once; a 400 naming the field for a count or limit the
    configuration refuses."""
    par = engine.config.parallel
    check_count(requests, engine.config.server.max_parallel_tasks, "tasks")
    workers = max_parallel or par.max_workers or 3
    if workers < 1:
        raise InvalidRequest("max_parallel must be at least 1", field="max_parallel")
    if par.max_parallel_limit and workers > par.max_parallel_limit:
        raise InvalidRequest(
            f"max_parallel must not exceed {par.max_parallel_limit} "
            "(parallel.max_parallel_limit)", field="max_parallel")
    return workers


def run_parallel(
    engine: Engine,
    requests: list[PromptRequest],
    *,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    on_update: UpdateFn | None = None,
    on_event: EventFn | None = None,
    cancellation: Cancellation | None = None,
) -> JobReport:
    """Run every task, at most ``max_parallel`` at a time; results in input order."""
    workers = parallel_workers(engine, requests, max_parallel)
    canceller = cancellation or Cancellation()
    started = time.monotonic()

    def task(index: int, req: PromptRequest) -> TaskOutcome:
        outcome = _run_one(engine, index, req, canceller=canceller, on_update=on_update,
                           on_event=on_event)
        if fail_fast and outcome.status not in (RunStatus.OK, RunStatus.CANCELLED):
            canceller.cancel_all()
        return outcome

    with ThreadPoolExecutor(max_workers=min(workers, len(requests)),
                            thread_name_prefix="clinvk-parallel") as pool:
        futures = [pool.submit(task, i, r) for i, r in enumerate(requests)]
        outcomes = [f.result() for f in futures]
    return JobReport(outcomes, int((time.monotonic() - started) * 1000))


@dataclass
class ChainStep:
    request: PromptRequest
    name: str | None = None


def run_chain(
    engine: Engine,
    steps: list[ChainStep],
    *,
    stop_on_failure: bool = False,
    pass_working_dir: bool = False,
    on_update: UpdateFn | None = None,
    on_event: EventFn | None = None,
    cancellation: Cancellation | None = None,
) -> JobReport:
    """Run steps in order; ``{{previous}}`` becomes the previous step's output."""
    check_count(steps, engine.config.server.max_chain_steps, "steps")
    started = time.monotonic()
    outcomes: list[TaskOutcome] = []
    previous_output: str | None = None
    previous_workdir: str | None = None
    stopped_at: int | None = None
    for index, step in enumerate(steps):
        req = step.request
        if stopped_at is not None:
            outcome = TaskOutcome(index=index, backend=req.backend or "", status=TaskState.SKIPPED,
                                  error=f"skipped: step {stopped_at + 1} failed",
                                  name=step.name, model=req.model)
            outcomes.append(outcome)
            if on_update:
                on_update(index, TaskState.SKIPPED, outcome)
            continue
        if previous_output is not None and PREVIOUS in req.prompt:
            req = replace(req, prompt=req.prompt.replace(PREVIOUS, previous_output))
        if pass_working_dir and not req.workdir and previous_workdir:
            req = replace(req, workdir=previous_workdir)
        outcome = _run_one(engine, index, req, name=step.name, on_update=on_update,
                           on_event=on_event, canceller=cancellation)
        outcomes.append(outcome)
        previous_output = outcome.output
        if outcome.result is not None:
            previous_workdir = outcome.result.working_dir
        if stop_on_failure and not outcome.ok:
            stopped_at = index
    return JobReport(outcomes, int((time.monotonic() - started) * 1000))


def run_compare(
    engine: Engine,
    base: PromptRequest,
    backends: list[str],
    *,
    sequential: bool = False,
    on_update: UpdateFn | None = None,
    on_event: EventFn | None = None,
    cancellation: Cancellation | None = None,
) -> JobReport:
    """The same prompt on several backends, concurrently unless ``sequential``."""
    check_count(backends, engine.config.server.max_compare_backends, "backends")
    requests = [replace(base, backend=name) for name in backends]
    if sequential:
        started = time.monotonic()
        outcomes = [_run_one(engine, i, r, on_update=on_update, on_event=on_event,
                             canceller=cancellation)
                    for i, r in enumerate(requests)]
        return JobReport(outcomes, int((time.monotonic() - started) * 1000))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(requests),
                            thread_name_prefix="clinvk-compare") as pool:
        futures = [pool.submit(_run_one, engine, i, r, on_update=on_update,
                               on_event=on_event, canceller=cancellation)
                   for i, r in enumerate(requests)]
        outcomes = [f.result() for f in futures]
    return JobReport(outcomes, int((time.monotonic() - started) * 1000))
