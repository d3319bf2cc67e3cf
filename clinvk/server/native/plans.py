"""Request bodies of /parallel, /chain and /compare (validated by their schemas) as
orchestration plans, the one value both the synchronous routes and the jobs API run."""

from __future__ import annotations

from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.plans import OrchestrationPlan
from clinvk.core.types import JobKind
from clinvk.server.gateway import current_gateway
from clinvk.server.native.run_requests import prompt_request

SESSION_PLACEHOLDER = "{{session}}"


def check_backends(names: list[tuple[str, str]]) -> None:
    """Unknown backend names are a 400 naming the field (before anything runs)."""
    registry = current_gateway().engine.registry
    for name, field_path in names:
        registry.get(name, field=field_path)


def parallel_plan(args: dict[str, Any]) -> OrchestrationPlan:
    tasks = args["tasks"]
    check_backends([(t["backend"], f"tasks[{i}].backend") for i, t in enumerate(tasks)])
    dry_run = bool(args.get("dry_run"))
    requests = [prompt_request(t, ephemeral=True, session_id=None,
                               dry_run=dry_run or bool(t.get("dry_run")))
                for t in tasks]
    return OrchestrationPlan(JobKind.PARALLEL, requests,
                             max_parallel=args.get("max_parallel") or None,
                             fail_fast=bool(args.get("fail_fast")))


def chain_plan(args: dict[str, Any]) -> OrchestrationPlan:
    for flag in ("pass_session_id", "persist_sessions"):
        if args.get(flag):
            raise InvalidRequest(
                f"{flag} is not supported: chains are always ephemeral", field=flag)
    steps = args["steps"]
    for i, step in enumerate(steps):
        if SESSION_PLACEHOLDER in step["prompt"]:
            raise InvalidRequest(
                f"chain step {i + 1} uses {SESSION_PLACEHOLDER}, but chains keep no "
                "sessions; only {{previous}} is available", field=f"steps[{i}].prompt")
    check_backends([(s["backend"], f"steps[{i}].backend") for i, s in enumerate(steps)])
    dry_run = bool(args.get("dry_run"))
    requests = [prompt_request(s, ephemeral=True, session_id=None, dry_run=dry_run)
                for s in steps]
    return OrchestrationPlan(JobKind.CHAIN, requests, names=[s.get("name") for s in steps],
                             stop_on_failure=bool(args.get("stop_on_failure")),
                             pass_working_dir=bool(args.get("pass_working_dir")))


def compare_plan(args: dict[str, Any]) -> OrchestrationPlan:
    backends = [b.strip().lower() for b in args["backends"]]
    check_backends([(b, f"backends[{i}]") for i, b in enumerate(backends)])
    base = prompt_request(args, ephemeral=True, session_id=None)
    return OrchestrationPlan(JobKind.COMPARE, [base], backends=backends,
                             sequential=bool(args.get("sequential")))


PLAN_BUILDERS = {JobKind.PARALLEL: parallel_plan, JobKind.CHAIN: chain_plan,
                 JobKind.COMPARE: compare_plan}
