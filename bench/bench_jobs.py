"""Benchmark jobs: submit -> first logged event latency, and the event log's write cost.

* latency: an in-process JobService (embedded executor) takes ``--jobs`` submissions one
  after the other, running the C fake ``claude`` that bench/floor.py builds from a recording
  (so a run costs a process start and nothing else); for each, the time from the submit
  returning to the first event being readable from the log (what a follower sees first).
  Measured for prompt jobs and for parallel jobs of ``--tasks`` tasks.
* write cost: ``--events`` events appended to one job's log at a paced 1,000 events/s
  (the rate a fast CLI streams), timing each append (one SQLite write transaction).

    python3 bench/bench_jobs.py --jobs 20 --events 5000 --tasks 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env, pcts  # noqa: E402
from floor import build_fake  # noqa: E402


def submit_latency(root: Path, jobs: int, tasks: int) -> dict[str, dict[str, float]]:
    from clinvk.core.config import load_config
    from clinvk.core.engine import Engine, PromptRequest
    from clinvk.core.jobs import JobLimits, JobService
    from clinvk.core.plans import OrchestrationPlan
    from clinvk.core.store.sqlite import SqliteStore
    from clinvk.core.types import JobKind

    config = load_config(env=dict(os.environ))
    store = SqliteStore(root / "clinvk-home" / "sessions.db")
    service = JobService(Engine(config, store, server_mode=True), store.jobs,
                         JobLimits(threads=2))

    def request() -> PromptRequest:
        return PromptRequest("hi", backend="claude", ephemeral=True, workdir=str(root / "work"))

    submits = {
        "prompt": lambda: service.submit_prompt(request()),
        f"parallel_{tasks}_tasks": lambda: service.submit_plan(OrchestrationPlan(
            JobKind.PARALLEL, [request() for _ in range(tasks)], max_parallel=tasks)),
    }
    report = {}
    for name, submit in submits.items():
        samples = []
        for _ in range(jobs):
            job = submit()
            started = time.perf_counter()
            while not service.store.events_after(job.id, 0, limit=1):
                time.sleep(0.0005)
            samples.append((time.perf_counter() - started) * 1000)
            while not service.store.get(job.id).status.finished:
                time.sleep(0.01)
        report[name] = pcts(samples)
    return report


def write_cost(root: Path, events: int) -> dict[str, float]:
    from clinvk.core.jobs.model import JobKind
    from clinvk.core.store.sqlite import SqliteStore

    store = SqliteStore(root / "clinvk-home" / "writes.db").jobs
    job = store.create(JobKind.PROMPT, {}, owner=None, backend="claude", max_queued=0)
    assert job is not None
    body = {"type": "message", "content": {"text": "x" * 40, "is_partial": True}}
    samples = []
    next_at = time.perf_counter()
    for _ in range(events):
        next_at += 0.001
        started = time.perf_counter()
        store.append_event(job.id, body, cap=10_000)
        samples.append((time.perf_counter() - started) * 1e6)
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return pcts(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(bench_env(root))
        os.environ["CLINVK_BACKENDS_CLAUDE_COMMAND"] = str(build_fake(root))
        os.chdir(root / "work")
        report = {"submit_to_first_event_ms": submit_latency(root, args.jobs, args.tasks),
                  "append_event_us_at_1k_per_s": write_cost(root, args.events)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
