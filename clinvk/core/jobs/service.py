"""Submit, run, cancel, follow and recover jobs on top of the engine.

A prompt job runs through exactly the code a synchronous ``/prompt`` uses
(:meth:`Engine.prepare` / :meth:`Engine.start`); each unified event is appended to the job's
log as it arrives. The worker running a job polls the row's cancel flag, so a cancel request
answered by any worker process reaches the process group.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from clinvk.core.engine import Engine, PromptRequest, RunResult
from clinvk.core.errors import (
    ClinvkError,
    JobNotFinished,
    JobQueueFull,
    NotFound,
    RunAlreadyStarted,
)
from clinvk.core.jobs.claims import ClaimKeeper
from clinvk.core.jobs.executor import EmbeddedExecutor, JobExecutor
from clinvk.core.jobs.model import JOB_END, TASK_END, Job, JobKind, JobStatus
from clinvk.core.jobs.responses import ResponseRecord
from clinvk.core.jobs.webhooks import WebhookPolicy, WebhookSender, new_record
from clinvk.core.orchestrate import Cancellation, JobReport, TaskOutcome
from clinvk.core.ownership import Principal
from clinvk.core.plans import (
    OrchestrationPlan,
    check_plan,
    plan_from_dict,
    request_from_dict,
    run_plan,
)
from clinvk.core.store.interface import JobTable, ResponseTable
from clinvk.core.types import RunOrigin, RunStatus

log = logging.getLogger("clinvk.jobs")

#: How often a running job looks at its cancel flag and a follower at the log.
POLL_SECS = 0.1
#: Said when a job's run had been taken by an agent host before its gateway died.
STARTED_ELSEWHERE = ("the gateway that placed this job stopped after an agent host had "
                     "started its run; it is not re-run (agent runs have side effects) — "
                     "submit it again if wanted")
LOST_ERROR = ("the server running this job stopped before it finished; it is not re-run "
              "(agent runs have side effects) — submit it again if wanted")


@dataclass(frozen=True)
class JobLimits:
    max_queued: int = 100
    max_events: int = 10_000
    retention_secs: float = 7 * 24 * 3600
    retention_count: int = 1000
    threads: int = 8
    claim_secs: float = 30.0  # how long a claim lasts unless renewed (every third of it)


JobOutcome = tuple[JobStatus, dict[str, Any] | None, str | None]


def run_key(job_id: str) -> str:
    """The name of a job's run on the agent hosts, the same for every gateway."""
    return f"job.{job_id}"


def run_keys(job: Job) -> list[str]:
    """The names of every run a job makes: one for a prompt, one per task of a plan."""
    key = run_key(job.id)
    if job.kind == JobKind.PROMPT:
        return [key]
    plan = plan_from_dict(job.request, RunOrigin.JOB)
    count = len(plan.backends) if plan.kind == JobKind.COMPARE else len(plan.requests)
    return [f"{key}.{index}" for index in range(count)]


def _plan_status(report: JobReport) -> tuple[JobStatus, str | None]:
    """Succeeded when every sub-run succeeded; the result body says what each did."""
    if any(o.result is not None and o.result.lost for o in report.outcomes):
        return JobStatus.LOST, "an agent host went away during a sub-run; it is not re-run"
    bad = [o for o in report.outcomes if not o.ok]
    if not bad:
        return JobStatus.SUCCEEDED, None
    return JobStatus.FAILED, f"{len(bad)} of {len(report.outcomes)} sub-runs did not succeed"


def _status_of(result: RunResult) -> JobStatus:
    if result.lost:
        return JobStatus.LOST  # its agent host went away mid-run; never re-run
    if result.status == RunStatus.OK:
        return JobStatus.SUCCEEDED
    if result.status == RunStatus.CANCELLED:
        return JobStatus.CANCELLED
    return JobStatus.FAILED


def webhook_policy(engine: Engine) -> WebhookPolicy:
    srv = engine.config.server
    return WebhookPolicy(allowed_hosts=srv.jobs_webhook_allowed_hosts,
                         secret=srv.jobs_webhook_secret, attempts=srv.jobs_webhook_attempts,
                         backoff_secs=srv.jobs_webhook_backoff_secs,
                         timeout_secs=srv.jobs_webhook_timeout_secs,
                         threads=srv.jobs_webhook_threads)


class JobService:
    def __init__(self, engine: Engine, store: JobTable, limits: JobLimits,
                 executor: JobExecutor | None = None,
                 records: ResponseTable | None = None) -> None:
        self.engine = engine
        self.store = store
        self.limits = limits
        self.executor = executor or EmbeddedExecutor(limits.threads)
        self.records = records
        self.webhooks = WebhookSender(webhook_policy(engine), store)
        self._claims = ClaimKeeper(store, limits.claim_secs)

    # -- submit and look up -------------------------------------------------------------------

    def submit_prompt(self, req: PromptRequest, callback_url: str | None = None) -> Job:
        """Validate now (a bad request is refused before it is queued), run later."""
        webhook = self._webhook_record(callback_url)
        prepared = self.engine.prepare(req)
        self.engine.accounting.check(req)  # a spent budget: 429 now, not a failed job
        body = dataclasses.asdict(req)  # the principal travels as a plain dict
        return self._queue(JobKind.PROMPT, body, req.principal, prepared.backend.name, webhook)

    def submit_plan(self, plan: OrchestrationPlan, callback_url: str | None = None) -> Job:
        """A parallel, chain or compare run as a job; refused now if its shape is."""
        webhook = self._webhook_record(callback_url)
        check_plan(self.engine, plan)
        self.engine.accounting.check(plan.requests[0])  # one caller for every task
        names = set(plan.backend_names())
        return self._queue(plan.kind, plan.to_dict(), plan.principal,
                           names.pop() if len(names) == 1 else None, webhook)

    def _webhook_record(self, callback_url: str | None) -> dict[str, Any] | None:
        if callback_url is None:
            return None
        return new_record(self.webhooks.policy.check(callback_url))

    def _queue(self, kind: JobKind, body: dict[str, Any], principal: Principal,
               backend: str | None, webhook: dict[str, Any] | None) -> Job:
        job = self.store.create(kind, body, owner=principal.owner, backend=backend,
                                max_queued=self.limits.max_queued, webhook=webhook)
        if job is None:
            raise JobQueueFull(f"{self.limits.max_queued} jobs are already queued "
                               "(server.jobs_max_queued); try again when some have started",
                               retry_after=5)
        self.executor.submit(job.id, self.run)
        return job

    def get(self, job_id: str, principal: Principal) -> Job:
        job = self.store.get(job_id)
        if job is None or not principal.may_see(job.owner):
            raise NotFound(f"job {job_id} not found")
        return job

    def delete(self, job_id: str, principal: Principal) -> Job:
        job = self.get(job_id, principal)
        if not job.status.finished:
            raise JobNotFinished(f"job {job_id} is {job.status}; cancel it first, then delete")
        self.store.delete(job_id)
        return job

    def record(self, record_id: str, principal: Principal) -> ResponseRecord:
        """A stored response the caller may see (another key's is not found)."""
        record = self.records.get(record_id) if self.records is not None else None
        if record is None or not principal.may_see(record.owner):
            raise NotFound(f"response {record_id} not found")
        return record

    def delete_record(self, record_id: str, principal: Principal) -> ResponseRecord:
        """A stored response and, for a background one, its finished job."""
        record = self.record(record_id, principal)
        if record.job_id is not None and self.store.get(record.job_id) is not None:
            self.delete(record.job_id, principal)
        assert self.records is not None
        self.records.delete(record_id)
        return record

    def cancel(self, job_id: str, principal: Principal, wait: float = 3.0) -> Job:
        """Idempotent; waits (bounded) until the run has stopped."""
        job = self.get(job_id, principal)
        if job.status.finished:
            return job
        self.store.request_cancel(job_id)
        self.engine.runner.withdraw(run_keys(job))  # runs still waiting for a host
        if self.store.finish(job_id, JobStatus.CANCELLED, error="cancelled before it started",
                             only_from=(JobStatus.QUEUED,)):
            self._finished(job_id, JobStatus.CANCELLED)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            job = self.get(job_id, principal)
            if job.status.finished:
                break
            time.sleep(POLL_SECS / 2)
        return job

    def follow(self, job_id: str, principal: Principal, after: int,
               heartbeat: float | None) -> Iterator[dict[str, Any] | None]:
        """The job's events after ``after``, live until the final one; ``None`` items are
        heartbeats (every ``heartbeat`` seconds of silence)."""
        self.get(job_id, principal)
        quiet_since = time.monotonic()
        while True:
            batch = self.store.events_after(job_id, after)
            for event in batch:
                after = event["sequence"]
                yield event
                if event["type"] == JOB_END:
                    return
            if batch:
                quiet_since = time.monotonic()
                continue
            job = self.store.get(job_id)
            if job is None:
                return
            if heartbeat and time.monotonic() - quiet_since >= heartbeat:
                quiet_since = time.monotonic()
                yield None
            time.sleep(POLL_SECS)

    # -- run ----------------------------------------------------------------------------------

    def run(self, job_id: str) -> None:
        """Executor entry point: claim the job (once, in one process) and run it.

        The job stays ``queued`` while its run waits for a place to run (a free agent host);
        it becomes ``running`` when the CLI has started, so a job whose gateway died before
        that is taken over by the next one (see docs/deployment.md, "Who holds a job")."""
        if not self._claims.take(job_id):
            return
        try:
            outcome = self._run_claimed(job_id)
        finally:
            self._claims.drop(job_id)
        if outcome is None:
            return  # cancelled while it waited, or taken over: someone else finishes it
        status, result, error = outcome
        if self.store.finish(job_id, status, result=result, error=error,
                             only_from=(JobStatus.QUEUED, JobStatus.RUNNING)):
            self._finished(job_id, status)

    def _run_claimed(self, job_id: str) -> JobOutcome | None:
        job = self.store.get(job_id)
        assert job is not None
        try:
            if job.kind == JobKind.PROMPT:
                return self._run_prompt(job)
            return self._run_plan(job)
        except RunAlreadyStarted:
            return JobStatus.LOST, None, STARTED_ELSEWHERE
        except ClinvkError as exc:
            return JobStatus.FAILED, None, str(exc)
        except Exception as exc:
            log.exception("job %s failed inside the gateway", job_id)
            return JobStatus.FAILED, None, f"internal error: {type(exc).__name__}"

    def _run_prompt(self, job: Job) -> JobOutcome | None:
        req = replace(request_from_dict(job.request, RunOrigin.JOB), run_key=run_key(job.id))
        handle = self.engine.start(self.engine.prepare(req))
        if not self._claims.started(job.id):
            handle.close()  # cancelled while it waited for a host: the run stops here
            return None
        self.store.set_session(job.id, handle.session_id, handle.prepared.backend.name)
        last_poll = time.monotonic()
        for event in handle.events(heartbeat=POLL_SECS):
            if event is not None:
                self.store.append_event(job.id, event.to_dict(), cap=self.limits.max_events)
            if time.monotonic() - last_poll >= POLL_SECS:
                last_poll = time.monotonic()
                if self.store.cancel_requested(job.id):
                    handle.cancel()
        result = handle.result
        assert result is not None
        self.store.set_session(job.id, result.session_id, result.backend)
        return _status_of(result), result.to_dict(), result.error

    def _run_plan(self, job: Job) -> JobOutcome:
        """Every sub-run's events go to the job's log tagged with their task; a watcher
        thread turns the row's cancel flag into cancelling every run of the plan."""
        plan = plan_from_dict(job.request, RunOrigin.JOB)
        key = run_key(job.id)  # each sub-run's name adds its index
        plan = replace(plan, requests=[replace(r, run_key=key) for r in plan.requests])
        cancellation = Cancellation()
        done = threading.Event()
        watcher = threading.Thread(target=self._watch_cancel, name=f"clinvk-cancel-{job.id}",
                                   args=(job.id, cancellation, done), daemon=True)
        watcher.start()
        chain = plan.kind == JobKind.CHAIN

        def tags(index: int) -> dict[str, int]:
            """Which sub-run an event belongs to: its index in ``results`` (and, for a chain,
            the 1-based step number the result carries)."""
            return {"task": index, "step": index + 1} if chain else {"task": index}

        def on_event(index: int, event: Any) -> None:
            # A sub-run's first event: its CLI has started, so the job is under way.
            if not self._claims.started(job.id):
                cancellation.cancel_all()  # cancelled while the plan waited for hosts
                return
            self.store.append_event(job.id, {**event.to_dict(), **tags(index)},
                                    cap=self.limits.max_events)

        def on_update(index: int, state: str, outcome: TaskOutcome | None) -> None:
            if outcome is None:
                return  # about to start: its own events follow
            if not self._claims.running(job.id) and self.store.cancel_requested(job.id):
                return  # cancelled before anything ran: the job's log is closed already
            content = {"status": outcome.status, "backend": outcome.backend}
            if outcome.error:
                content["error"] = outcome.error
            self.store.append_event(job.id, {"type": TASK_END, "backend": outcome.backend,
                                             **tags(index), "content": content},
                                    cap=self.limits.max_events)

        try:
            report, body = run_plan(self.engine, plan, on_event=on_event, on_update=on_update,
                                    cancellation=cancellation)
        finally:
            done.set()
            watcher.join()
        if self.store.cancel_requested(job.id):
            return JobStatus.CANCELLED, body, "cancelled"
        status, error = _plan_status(report)
        return status, body, error

    def _watch_cancel(self, job_id: str, cancellation: Cancellation,
                      done: threading.Event) -> None:
        while not done.wait(POLL_SECS):
            if self.store.cancel_requested(job_id):
                cancellation.cancel_all()
                return

    def _finished(self, job_id: str, status: JobStatus) -> None:
        """Once per job, by the one process that set its final status: close the log and
        hand the webhook (if any) to the sender."""
        self.store.append_event(job_id, {"type": JOB_END, "content": {"status": str(status)}},
                                cap=self.limits.max_events)
        job = self.store.get(job_id)
        if job is not None and job.callback_url:
            self.webhooks.finished(job_id)

    # -- start-up -----------------------------------------------------------------------------

    def recover(self) -> None:
        """At start: runs whose server died become ``lost``; queued jobs are run; old
        finished jobs are pruned."""
        for job_id in self.store.orphaned_running():
            if self.store.finish(job_id, JobStatus.LOST, error=LOST_ERROR,
                                 only_from=(JobStatus.RUNNING,)):
                self._finished(job_id, JobStatus.LOST)
        self.store.prune(max_age_secs=self.limits.retention_secs,
                         max_count=self.limits.retention_count)
        if self.records is not None:
            self.records.prune(max_age_secs=self.limits.retention_secs,
                               max_count=self.limits.retention_count)
        for job_id in self.store.queued():
            self.executor.submit(job_id, self.run)
