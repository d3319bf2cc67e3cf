"""Orchestration plans: a parallel, chain or compare request as one value.

The native routes run a plan in the request; the jobs API stores it (as plain JSON) and runs
it later in a job thread. Both go through :func:`run_plan`, so a job's result is exactly the
body the synchronous route answers with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from clinvk.core.engine import Engine, PromptRequest
from clinvk.core.orchestrate import (
    Cancellation,
    ChainStep,
    EventFn,
    JobReport,
    UpdateFn,
    check_count,
    parallel_workers,
    run_chain,
    run_compare,
    run_parallel,
)
from clinvk.core.ownership import Principal
from clinvk.core.types import JobKind, RunOrigin


@dataclass
class OrchestrationPlan:
    """What to run: ``requests`` are the parallel tasks, the chain steps, or (compare) the
    one base request asked of every name in ``backends``."""

    kind: JobKind  # parallel, chain or compare
    requests: list[PromptRequest]
    names: list[str | None] = field(default_factory=list)  # chain step names
    backends: list[str] = field(default_factory=list)  # compare
    max_parallel: int | None = None
    fail_fast: bool = False
    stop_on_failure: bool = False
    pass_working_dir: bool = False
    sequential: bool = False

    @property
    def principal(self) -> Principal:
        return self.requests[0].principal

    def backend_names(self) -> list[str]:
        if self.kind == JobKind.COMPARE:
            return list(self.backends)
        return [r.backend or "" for r in self.requests]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the principal as a dict) for a job row."""
        return dataclasses.asdict(self)


def request_from_dict(data: dict[str, Any], origin: RunOrigin) -> PromptRequest:
    """A stored request back as an engine request, marked with the edge that runs it."""
    return PromptRequest(**{**data, "principal": Principal(**data["principal"]),
                            "origin": origin})


def plan_from_dict(data: dict[str, Any], origin: RunOrigin) -> OrchestrationPlan:
    requests = [request_from_dict(r, origin) for r in data["requests"]]
    return OrchestrationPlan(**{**data, "kind": JobKind(data["kind"]), "requests": requests})


def check_plan(engine: Engine, plan: OrchestrationPlan) -> None:
    """Refuse now what running the plan would refuse as a whole (counts, limits), so a job
    is never queued only to fail on its shape. Per-task problems stay per-task results."""
    config = engine.config.server
    if plan.kind == JobKind.PARALLEL:
        parallel_workers(engine, plan.requests, plan.max_parallel)
    elif plan.kind == JobKind.CHAIN:
        check_count(plan.requests, config.max_chain_steps, "steps")
    else:
        check_count(plan.backends, config.max_compare_backends, "backends")


def run_plan(engine: Engine, plan: OrchestrationPlan, *, on_event: EventFn | None = None,
             on_update: UpdateFn | None = None,
             cancellation: Cancellation | None = None) -> tuple[JobReport, dict[str, Any]]:
    """Run the plan; the report and the route's response body."""
    hooks: dict[str, Any] = {"on_event": on_event, "on_update": on_update,
                             "cancellation": cancellation}
    if plan.kind == JobKind.PARALLEL:
        report = run_parallel(engine, plan.requests, max_parallel=plan.max_parallel,
                              fail_fast=plan.fail_fast, **hooks)
        return report, parallel_body(report)
    if plan.kind == JobKind.CHAIN:
        names = plan.names or [None] * len(plan.requests)
        steps = [ChainStep(r, name=n) for r, n in zip(plan.requests, names, strict=True)]
        report = run_chain(engine, steps, stop_on_failure=plan.stop_on_failure,
                           pass_working_dir=plan.pass_working_dir, **hooks)
        return report, chain_body(report)
    report = run_compare(engine, plan.requests[0], plan.backends, sequential=plan.sequential,
                         **hooks)
    return report, compare_body(report, plan.requests[0].prompt, plan.backends)


def parallel_body(report: JobReport) -> dict[str, Any]:
    return {
        "total_tasks": len(report.outcomes),
        "completed": report.completed,
        "failed": report.failed,
        "cancelled": report.cancelled,
        "total_duration_ms": report.total_duration_ms,
        "results": [o.to_dict() for o in report.outcomes],
    }


def chain_body(report: JobReport) -> dict[str, Any]:
    failed = report.failed_steps
    return {
        "total_steps": len(report.outcomes),
        "completed_steps": report.completed,
        "failed_step": failed[-1] if failed else None,
        "total_duration_ms": report.total_duration_ms,
        "results": [{**o.to_dict(), "step": o.index + 1} for o in report.outcomes],
    }


def compare_body(report: JobReport, prompt: str, backends: list[str]) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "backends": list(backends),
        "completed": report.completed,
        "failed": report.failed,
        "total_duration_ms": report.total_duration_ms,
        "results": [o.to_dict() for o in report.outcomes],
    }
