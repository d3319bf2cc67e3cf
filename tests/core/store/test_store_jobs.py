"""The job store and service without HTTP: event cap and marker, ownership, queue cap,
recovery, retention — over real fake-CLI runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.engine import make_engine
from support.procs import wait_until

from clinvk.core.engine import PromptRequest
from clinvk.core.errors import JobNotFinished, JobQueueFull, NotFound
from clinvk.core.jobs import JobKind, JobLimits, JobService, JobStatus
from clinvk.core.jobs.model import EVENTS_DROPPED, JOB_END
from clinvk.core.jobs.service import LOST_ERROR
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.store import JobTable, Store

pytestmark = pytest.mark.usefixtures("fake_path")

ALICE = Principal("a" * 24)
BOB = Principal("b" * 24)
ADMIN = Principal("c" * 24, admin=True)


class ManualExecutor:
    """Holds submitted jobs until the test runs them (the executor seam, seen from a test)."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def submit(self, job_id: str, run) -> None:  # noqa: ANN001
        self.pending.append(job_id)

    def shutdown(self) -> None:
        self.pending.clear()


@pytest.fixture
def jobs(store: Store) -> JobTable:
    """The job tables of the store under test (SQLite or PostgreSQL)."""
    return store.jobs


def test_the_event_cap_drops_the_oldest_and_readers_get_one_marker(jobs: JobTable) -> None:
    job = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    assert job is not None
    for i in range(10):
        jobs.append_event(job.id, {"type": "message", "content": {"i": i}}, cap=4)
    events = jobs.events_after(job.id, 0)
    assert events[0]["type"] == EVENTS_DROPPED
    assert events[0]["content"] == {"dropped_from": 1, "dropped_through": 6}
    assert [e["sequence"] for e in events] == [6, 7, 8, 9, 10]
    assert [e["sequence"] for e in jobs.events_after(job.id, 7)] == [8, 9, 10]


def test_the_queue_cap_refuses_with_a_clear_message(tmp_path: Path, jobs: JobTable) -> None:
    engine = make_engine(tmp_path)
    service = JobService(engine, jobs, JobLimits(max_queued=1), ManualExecutor())
    service.submit_prompt(PromptRequest("one", backend="claude"))
    with pytest.raises(JobQueueFull, match="1 jobs are already queued"):
        service.submit_prompt(PromptRequest("two", backend="claude"))


def test_jobs_belong_to_their_key(tmp_path: Path, jobs: JobTable) -> None:
    service = JobService(make_engine(tmp_path), jobs, JobLimits(), ManualExecutor())
    job = service.submit_prompt(PromptRequest("mine", backend="claude", principal=ALICE))
    assert service.get(job.id, ALICE).id == job.id
    assert service.get(job.id, ADMIN).id == job.id
    assert service.get(job.id, LOCAL).id == job.id
    with pytest.raises(NotFound):
        service.get(job.id, BOB)
    assert jobs.list(owner=BOB.owner, sees_all=False).records == []
    assert [j["id"] for j in jobs.list(owner=ALICE.owner, sees_all=False).records] == [job.id]


def test_a_job_runs_through_the_engine_and_ends_its_log(tmp_path: Path, jobs: JobTable) -> None:
    executor = ManualExecutor()
    service = JobService(make_engine(tmp_path), jobs, JobLimits(), executor)
    job = service.submit_prompt(PromptRequest("hi", backend="claude", principal=ALICE))
    with pytest.raises(JobNotFinished):
        service.delete(job.id, ALICE)
    service.run(executor.pending.pop())
    done = service.get(job.id, ALICE)
    assert done.status is JobStatus.SUCCEEDED and done.session_id
    assert done.result is not None and done.result["output"].startswith("Hello from stub")
    events = list(service.follow(job.id, ALICE, 0, heartbeat=None))
    assert events[-1]["type"] == JOB_END
    service.run(job.id)  # a second claim of the same job does nothing
    assert jobs.get(job.id).last_sequence == events[-1]["sequence"]


def _in_a_process_that_exits(work) -> None:  # noqa: ANN001
    """Run ``work(pid)`` in a child process that is gone when this returns (a dead runner)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if work(os.getpid()) else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_recovery_marks_dead_runners_lost_and_requeues_waiting_jobs(
        tmp_path: Path, jobs: JobTable) -> None:
    executor = ManualExecutor()
    service = JobService(make_engine(tmp_path), jobs, JobLimits(), executor)
    running = service.submit_prompt(PromptRequest("was running", backend="claude"))
    waiting = service.submit_prompt(PromptRequest("was waiting", backend="claude"))
    dispatched = service.submit_prompt(PromptRequest("waited for a host", backend="claude"))
    executor.pending.clear()
    _in_a_process_that_exits(lambda pid: jobs.claim(running.id, pid)
                             and jobs.start(running.id, pid))
    _in_a_process_that_exits(lambda pid: jobs.claim(dispatched.id, pid))
    ours = service.submit_prompt(PromptRequest("ours", backend="claude"))
    assert jobs.claim(ours.id, os.getpid()) and jobs.start(ours.id, os.getpid())
    executor.pending.clear()
    service.recover()
    assert jobs.get(running.id).status is JobStatus.LOST
    assert jobs.get(running.id).error == LOST_ERROR
    assert jobs.get(ours.id).status is JobStatus.RUNNING  # a live runner is not lost
    # Claimed but never started (its gateway died waiting for an agent host): queued again.
    assert jobs.get(dispatched.id).status is JobStatus.QUEUED
    assert executor.pending == [waiting.id, dispatched.id]
    assert jobs.claim(dispatched.id, os.getpid())


def test_a_claim_keeps_the_job_queued_until_its_run_starts(jobs: JobTable) -> None:
    job = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    assert jobs.claim(job.id, os.getpid(), 30)
    assert jobs.get(job.id).status is JobStatus.QUEUED and jobs.get(job.id).started_at is None
    assert not jobs.claim(job.id, os.getpid(), 30)  # held by a live process: not twice
    assert jobs.queued() == [job.id] and jobs.orphaned_running() == []
    assert jobs.renew_claim(job.id, os.getpid(), 30)
    assert not jobs.start(job.id, os.getppid())  # only the holder starts it
    assert jobs.start(job.id, os.getpid())
    assert jobs.get(job.id).status is JobStatus.RUNNING and jobs.get(job.id).started_at
    assert not jobs.start(job.id, os.getpid())  # once
    assert jobs.renew_claim(job.id, os.getpid(), 30)  # a running job's claim lives on
    assert jobs.orphaned_running() == []
    jobs.finish(job.id, JobStatus.SUCCEEDED)
    assert not jobs.renew_claim(job.id, os.getpid(), 30)  # finished: nothing to hold


def test_a_claim_is_not_started_once_the_job_was_cancelled(jobs: JobTable) -> None:
    job = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    assert jobs.claim(job.id, os.getpid(), 30)
    assert jobs.finish(job.id, JobStatus.CANCELLED, only_from=(JobStatus.QUEUED,))
    assert not jobs.start(job.id, os.getpid())
    assert jobs.get(job.id).status is JobStatus.CANCELLED


def test_cancel_of_a_queued_job_is_immediate_and_idempotent(
        tmp_path: Path, jobs: JobTable) -> None:
    service = JobService(make_engine(tmp_path), jobs, JobLimits(), ManualExecutor())
    job = service.submit_prompt(PromptRequest("never", backend="claude"))
    assert service.cancel(job.id, LOCAL).status is JobStatus.CANCELLED
    assert service.cancel(job.id, LOCAL).status is JobStatus.CANCELLED
    service.run(job.id)  # the executor's late call does not start it
    assert jobs.get(job.id).status is JobStatus.CANCELLED
    assert wait_until(lambda: jobs.get(job.id).finished_at is not None, 1)


def test_retention_prunes_by_count_keeping_unfinished(jobs: JobTable) -> None:
    ids = []
    for _ in range(5):
        job = jobs.create(JobKind.PROMPT, {}, owner=None, backend=None, max_queued=0)
        ids.append(job.id)
        jobs.finish(job.id, JobStatus.SUCCEEDED)
    live = jobs.create(JobKind.PROMPT, {}, owner=None, backend=None, max_queued=0)
    assert jobs.prune(max_age_secs=3600, max_count=2) == 3
    left = {j["id"] for j in jobs.list(owner=None, sees_all=True).records}
    assert left == {ids[-1], ids[-2], live.id}


def test_a_webhook_record_is_kept_and_replaced_per_attempt(jobs: JobTable) -> None:
    record = {"url": "https://hooks.example/x", "state": "pending", "attempts": 0,
              "last_status": None, "last_error": None, "delivered_at": None}
    job = jobs.create(JobKind.CHAIN, {}, owner=None, backend=None, max_queued=0,
                       webhook=record)
    assert job is not None and job.callback_url == "https://hooks.example/x"
    assert job.to_dict()["webhook"] == record and job.kind == JobKind.CHAIN
    jobs.set_webhook(job.id, {**record, "attempts": 1, "last_status": 503,
                               "last_error": "HTTP 503"})
    again = jobs.get(job.id)
    assert again is not None and again.webhook is not None
    assert again.webhook["attempts"] == 1 and again.webhook["last_status"] == 503
    assert "webhook" not in again.to_dict(webhook=False)
    plain = jobs.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    assert plain is not None and plain.callback_url is None
    assert "webhook" not in plain.to_dict()
