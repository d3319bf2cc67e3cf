"""The MCP tools: one engine, the same task shapes as the REST API.

Descriptions are written for a model choosing a tool. Every tool runs with the server-side
policy (workdir allow-list, privilege ceiling, concurrency caps, timeouts from the config):
nothing a client sends can raise an agent's permissions past the config. A refusal or a
failed run comes back as a tool error (``isError``) with the engine's own message; the
server keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from clinvk.core.engine import Engine, PromptRequest, RunResult
from clinvk.core.errors import ClinvkError
from clinvk.core.orchestrate import ChainStep, JobReport, run_chain, run_compare, run_parallel
from clinvk.core.ownership import Principal
from clinvk.core.store import Store
from clinvk.core.types import RunOrigin, RunStatus
from clinvk.mcp.runs import ToolRun

Backend = Annotated[str | None, Field(
    description="Which agent CLI runs it: claude, codex or gemini (default: the configured "
                "default backend).")]
Model = Annotated[str | None, Field(
    description="Model for that backend, or an alias: fast, balanced, best (default: the "
                "backend's own default).")]
Workdir = Annotated[str | None, Field(
    description="Absolute path of the directory the agent works in (default: the server's "
                "current directory). Must be allowed by the server's workdir policy.")]
Timeout = Annotated[float | None, Field(
    gt=0, description="Seconds before the run is stopped (at most the server's maximum).")]


class Task(BaseModel):
    """One prompt for one backend (a parallel task or a chain step)."""

    prompt: str = Field(description="What to ask the agent.")
    backend: Backend = None
    model: Model = None
    workdir: Workdir = None
    name: str | None = Field(None, description="A label for this task in the results.")
    timeout_secs: Timeout = None


def _result_data(result: RunResult) -> dict[str, Any]:
    data = result.to_dict()
    data.pop("backend_session_id", None)
    return data


def _run_result(result: RunResult) -> CallToolResult:
    """The answer text plus the structured result; a failed run is a tool error."""
    data = _result_data(result)
    if result.status == RunStatus.OK:
        text = result.output
    else:
        text = result.error or f"the {result.backend} run ended with status {result.status}"
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=data, is_error=result.status != RunStatus.OK)


def _report_result(report: JobReport, summary: dict[str, Any]) -> CallToolResult:
    results = [o.to_dict() for o in report.outcomes]
    lines = []
    for outcome, data in zip(report.outcomes, results, strict=True):
        label = outcome.name or f"#{outcome.index + 1} {outcome.backend}"
        body = outcome.output if outcome.ok else (outcome.error or outcome.status)
        lines.append(f"## {label} ({outcome.status})\n{body}")
        data.setdefault("index", outcome.index)
    structured = {**summary, "completed": report.completed, "failed": report.failed,
                  "total_duration_ms": report.total_duration_ms, "results": results}
    return CallToolResult(content=[TextContent(type="text", text="\n\n".join(lines))],
                          structured_content=structured, is_error=report.completed == 0)


def _request(task: Task | None, principal: Principal, **fields: Any) -> PromptRequest:
    if task is not None:
        fields = {"prompt": task.prompt, "backend": task.backend, "model": task.model,
                  "workdir": task.workdir, "timeout_secs": task.timeout_secs, **fields}
    return PromptRequest(principal=principal, origin=RunOrigin.MCP, **fields)


PrincipalOf = Callable[[Context], Principal]


async def guarded(ctx: Context, work: Callable[[ToolRun], CallToolResult]) -> CallToolResult:
    """Run ``work`` off the event loop for one tool call; an engine error is a tool error."""
    run = ToolRun(ctx)
    try:
        return await run(lambda: work(run))
    except ClinvkError as exc:
        raise ToolError(exc.message) from None


def updates(tool: ToolRun) -> Callable[[int, str, Any], None]:
    """An orchestration's task updates as the tool call's progress notifications."""
    return lambda index, state, _outcome: tool.progress(f"task {index + 1}: {state}")


def register(server: MCPServer, engine: Engine, store: Store, principal_of: PrincipalOf) -> None:
    """Add clinvk's tools to ``server``."""
    _register_run(server, engine, principal_of)
    _register_orchestration(server, engine, principal_of)
    _register_sessions(server, store, principal_of)


def _register_run(server: MCPServer, engine: Engine, principal_of: PrincipalOf) -> None:
    @server.tool(description=(
        "Run one prompt on a coding agent (Claude Code, Codex or Gemini CLI) and return its "
        "answer. The agent can read and change files in the working directory. Pass "
        "session_id (from an earlier result) to continue that conversation. Progress "
        "notifications follow the agent's events; cancelling the request stops the agent."))
    async def run(ctx: Context, prompt: Annotated[str, Field(description="What to ask.")],
                  backend: Backend = None, model: Model = None, workdir: Workdir = None,
                  session_id: Annotated[str | None, Field(
                      description="Continue this clinvk session (id or unique prefix).")
                  ] = None,
                  timeout_secs: Timeout = None) -> CallToolResult:
        req = _request(None, principal_of(ctx), prompt=prompt, backend=backend, model=model,
                       workdir=workdir, session_id=session_id, timeout_secs=timeout_secs)
        return await guarded(ctx, lambda tool: _run_result(tool.prompt(engine, req)))


def _register_orchestration(server: MCPServer, engine: Engine, principal_of: PrincipalOf
                            ) -> None:
    @server.tool(description=(
        "Run several independent prompts at once, each on its own agent, and return every "
        "result in input order. Use it to split work or to try alternatives side by side."))
    async def parallel(ctx: Context, tasks: list[Task],
                       max_parallel: Annotated[int | None, Field(
                           ge=1, description="How many run at the same time.")] = None,
                       fail_fast: Annotated[bool, Field(
                           description="Stop the others after the first failure.")] = False,
                       ) -> CallToolResult:
        principal = principal_of(ctx)
        requests = [_request(task, principal) for task in tasks]
        names = [task.name for task in tasks]

        def work(tool: ToolRun) -> CallToolResult:
            report = run_parallel(engine, requests, max_parallel=max_parallel,
                                  fail_fast=fail_fast, on_update=updates(tool),
                                  cancellation=tool.cancellation)
            for outcome, name in zip(report.outcomes, names, strict=True):
                outcome.name = outcome.name or name
            return _report_result(report, {"total_tasks": len(tasks)})

        return await guarded(ctx, work)

    @server.tool(description=(
        "Run steps one after another; {{previous}} in a step's prompt becomes the previous "
        "step's answer. Use it for pipelines such as: analyse with one agent, then have "
        "another review or implement the result."))
    async def chain(ctx: Context, steps: list[Task],
                    stop_on_failure: Annotated[bool, Field(
                        description="Skip the remaining steps after a failed one.")] = True,
                    ) -> CallToolResult:
        principal = principal_of(ctx)
        chain_steps = [ChainStep(_request(step, principal), name=step.name) for step in steps]

        def work(tool: ToolRun) -> CallToolResult:
            report = run_chain(engine, chain_steps, stop_on_failure=stop_on_failure,
                               on_update=updates(tool), cancellation=tool.cancellation)
            return _report_result(report, {"total_steps": len(steps)})

        return await guarded(ctx, work)

    @server.tool(description=(
        "Ask several agents the same prompt and return their answers side by side, for a "
        "second opinion or to compare backends."))
    async def compare(ctx: Context, prompt: Annotated[str, Field(description="What to ask.")],
                      backends: Annotated[list[str], Field(
                          min_length=1, description="Backends to ask, e.g. [claude, gemini]."
                      )],
                      model: Model = None, workdir: Workdir = None,
                      sequential: Annotated[bool, Field(
                          description="One after the other instead of at once.")] = False,
                      ) -> CallToolResult:
        base = _request(None, principal_of(ctx), prompt=prompt, model=model, workdir=workdir)

        def work(tool: ToolRun) -> CallToolResult:
            report = run_compare(engine, base, list(backends), sequential=sequential,
                                 on_update=updates(tool), cancellation=tool.cancellation)
            return _report_result(report, {"prompt": prompt, "backends": list(backends)})

        return await guarded(ctx, work)


def _register_sessions(server: MCPServer, store: Store, principal_of: PrincipalOf) -> None:
    @server.tool(description=(
        "List stored clinvk sessions (most recently used first), to find one to continue "
        "with run(session_id=...)."))
    async def sessions_list(ctx: Context, backend: Backend = None,
                            limit: Annotated[int, Field(ge=1, le=100)] = 20) -> CallToolResult:
        principal = principal_of(ctx)

        def work(_tool: ToolRun) -> CallToolResult:
            page = store.list(backend=backend, limit=limit, visible_to=principal)
            rows = [{k: s.to_dict()[k] for k in ("id", "backend", "title", "status",
                                                 "turn_count", "last_used", "working_dir")}
                    for s in page.sessions]
            text = "\n".join(f"{r['id'][:12]}  {r['backend']:<7} {r['status']:<9} "
                             f"{r['title']}" for r in rows) or "no sessions"
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content={"sessions": rows, "total": page.total})

        return await guarded(ctx, work)

    @server.tool(description="Show one clinvk session: its backend, model, working directory, "
                             "turns, token usage and first prompt.")
    async def session_show(ctx: Context, session_id: Annotated[str, Field(
            description="Session id or a unique prefix of at least 4 characters.")]
    ) -> CallToolResult:
        principal = principal_of(ctx)

        def work(_tool: ToolRun) -> CallToolResult:
            session = store.get(session_id, visible_to=principal).to_dict()
            session.pop("backend_session_id", None)
            session.pop("owner", None)
            text = (f"{session['id']} ({session['backend']}, {session['status']}, "
                    f"{session['turn_count']} turns) in {session['working_dir']}: "
                    f"{session['title']}")
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content=session)

        return await guarded(ctx, work)

