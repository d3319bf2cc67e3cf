"""The native REST API (``/api/v1``, docs/api.md): prompt, orchestration, backends, sessions.

Handlers only translate: request body -> :class:`PromptRequest` -> engine -> response body.
Bodies use the envelope ``{"success": true, "data": {...}}`` unless
``server.response_envelope`` is false (then ``data`` is the whole body, as the Go tool
returned it). Every failure goes through :mod:`clinvk.server.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, request
from flask.views import MethodView

from clinvk.core.engine import PromptRequest, RunResult
from clinvk.core.errors import InvalidRequest
from clinvk.core.orchestrate import (
    ChainStep,
    JobReport,
    run_chain,
    run_compare,
    run_parallel,
)
from clinvk.core.types import RunOrigin, RunStatus
from clinvk.server import current_gateway
from clinvk.server.errors import ApiError, ApiException
from clinvk.server.native.schemas import (
    ApiErrorSchema,
    BackendListEnvelope,
    ChainEnvelope,
    ChainRequestSchema,
    ChainResponseSchema,
    CompareEnvelope,
    CompareRequestSchema,
    CompareResponseSchema,
    ParallelEnvelope,
    ParallelRequestSchema,
    ParallelResponseSchema,
    PromptEnvelope,
    PromptRequestSchema,
    SessionDeletedEnvelope,
    SessionEnvelope,
    SessionListEnvelope,
    SessionListQuerySchema,
    SessionListSchema,
    SessionSchema,
    TaskResultSchema,
    dump,
)
from clinvk.server.parsing import Blueprint, check_body_request
from clinvk.server.responses import envelope_enabled, json_response
from clinvk.server.security import identify
from clinvk.server.streaming import NDJSON_MIMETYPE, ndjson_response, run_to_completion

URL_PREFIX = "/api/v1"
API_TAG = "api"
SESSION_PLACEHOLDER = "{{session}}"

blp = Blueprint(
    "native", __name__, url_prefix=URL_PREFIX,
    description="Native REST API: prompts, sessions, parallel/chain/compare orchestration.",
)
blp.before_request(check_body_request)

_ERROR_TEXT = {
    400: "Invalid request (malformed JSON, schema violation, unknown backend); "
         "`details.field` names the field.",
    403: "Refused by server policy (workdir, approval/sandbox ceiling, extra flag).",
    404: "Session not found.",
    409: "The session is busy with another turn.",
    413: "Request body too large (server.max_request_body_bytes).",
    415: "Content-Type is not JSON.",
    500: "Server error (details are in the server log only).",
    502: "The backend ran and failed; `data` is the full result. Carries x-should-retry: false.",
    503: "Backend not installed, server saturated or run cancelled by shutdown; Retry-After "
         "says when to retry.",
    504: "The backend timed out; `data` is the partial result. Carries x-should-retry: false.",
}


def documents_errors(*statuses: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the native error body to the OpenAPI document for these statuses."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        for status in statuses:
            func = blp.alt_response(status, schema=ApiErrorSchema,
                                    description=_ERROR_TEXT.get(status, "Error"))(func)
        return func

    return decorator


# --------------------------------------------------------------------------- helpers


def ok(data: Mapping[str, Any], status: int = 200) -> Response:
    body = {"success": True, "data": data} if envelope_enabled() else data
    return json_response(body, status)


def prompt_request(args: Mapping[str, Any], **overrides: Any) -> PromptRequest:
    """A request body (already validated by its schema) as an engine request."""
    fields = dict(
        prompt=args["prompt"],
        backend=args.get("backend"),
        model=args.get("model"),
        workdir=args.get("workdir"),
        session_id=args.get("session_id"),
        ephemeral=bool(args.get("ephemeral")),
        approval_mode=args.get("approval_mode"),
        sandbox_mode=args.get("sandbox_mode"),
        max_turns=args.get("max_turns"),
        max_tokens=args.get("max_tokens"),
        system_prompt=args.get("system_prompt"),
        verbose=bool(args.get("verbose")),
        dry_run=bool(args.get("dry_run")),
        extra_flags=list(args.get("extra") or []),
        metadata=args.get("metadata"),
        timeout_secs=args.get("timeout_secs"),
        principal=identify().principal,
        origin=RunOrigin.API,
    )
    fields.update(overrides)
    return PromptRequest(**fields)


def result_data(result: RunResult) -> dict[str, Any]:
    """The documented ``PromptResultSchema`` body. Built directly (not by a marshmallow
    dump, which only copied these JSON-ready values and sat on every prompt's critical
    path); tests/server/test_app.py checks it against the schema's own dump."""
    data = result.to_dict()
    if result.dry_run:
        data["dry_run"] = True
        data["command"] = list(result.command)
    return data


def result_response(result: RunResult) -> Response:
    """200 for a good run; a failed run is a 502, a timeout 504, a cancelled run 503."""
    if result.status == RunStatus.OK:
        return ok(result_data(result))
    no_retry = {"x-should-retry": "false"}
    if result.status == RunStatus.TIMEOUT:
        error = ApiError(504, "backend_timeout", result.error or "backend timed out",
                         data=result_data(result), headers=no_retry)
    elif result.status == RunStatus.CANCELLED:
        error = ApiError(503, "run_cancelled", result.error or "run was cancelled",
                         data=result_data(result), headers=no_retry)
    else:
        assert result.status == RunStatus.FAILED
        error = ApiError(502, "backend_failed", result.error or "backend failed",
                         data=result_data(result), headers=no_retry)
    raise ApiException(error)


def submitted_job(job: Any) -> Response:
    """202 + Location for a job that was queued (the jobs API and ``background: true``)."""
    response = ok(job.to_dict(), status=202)
    response.headers["Location"] = f"{URL_PREFIX}/jobs/{job.id}"
    return response


def check_backends(names: list[tuple[str, str]]) -> None:
    """Unknown backend names are a 400 naming the field (before anything runs)."""
    registry = current_gateway().engine.registry
    for name, field_path in names:
        registry.get(name, field=field_path)


def task_data(outcome: Any, *, step: int | None = None) -> dict[str, Any]:
    data = outcome.to_dict()
    if step is not None:
        data["step"] = step
    return dump(TaskResultSchema, data)


def _counts(report: JobReport) -> dict[str, int]:
    return {"completed": report.completed, "failed": report.failed}


# --------------------------------------------------------------------------- prompt


_PROMPT_200 = (
    "The run's result. With `output_format: stream-json` the body is instead an NDJSON "
    "stream (`application/x-ndjson`) of unified events ending in one `done` or `error` event.")


@blp.route("/prompt")
class Prompt(MethodView):
    @blp.arguments(PromptRequestSchema())
    @blp.response(200, PromptEnvelope, description=_PROMPT_200)
    @blp.alt_response(200, schema={"type": "string", "description": "One unified event (a "
                                   "JSON object) per line."},
                      content_type=NDJSON_MIMETYPE, success=True, description=_PROMPT_200)
    @blp.doc(operationId="executePrompt", summary="Run one prompt")
    @documents_errors(400, 403, 404, 409, 413, 415, 500, 502, 503, 504)
    def post(self, args: dict[str, Any]) -> Response:
        """Run a prompt on a backend, in a new session, a continued one, or none (ephemeral).

        `dry_run` resolves everything (backend, model, workdir policy, argv) and returns
        `output: "Would execute: ..."` without starting the CLI; unless `ephemeral`, it
        still creates the session record.
        """
        gw = current_gateway()
        engine = gw.engine
        if args.pop("background", False) and gw.jobs is not None:
            return submitted_job(gw.jobs.submit_prompt(
                prompt_request(args, tags=[API_TAG, "job"])))
        req = prompt_request(args, tags=[API_TAG])
        prepared = engine.prepare(req)
        handle = engine.start(prepared)
        if args.get("output_format") == "stream-json":
            return ndjson_response(handle, request.environ)
        run_to_completion(handle, request.environ)
        assert handle.result is not None
        return result_response(handle.result)


# --------------------------------------------------------------------------- orchestration


@blp.route("/parallel")
class Parallel(MethodView):
    @blp.arguments(ParallelRequestSchema())
    @blp.response(200, ParallelEnvelope, description="Per-task results in input order.")
    @blp.doc(operationId="executeParallel", summary="Run tasks in parallel")
    @documents_errors(400, 413, 415, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Run independent tasks at once (always ephemeral).

        At most `max_parallel` run at a time. With `fail_fast`, the first failure cancels
        running tasks (their process groups are killed) and queued ones; those report
        status `cancelled`. The response is 200 whatever the tasks did.
        """
        gw = current_gateway()
        tasks = args["tasks"]
        check_backends([(t["backend"], f"tasks[{i}].backend") for i, t in enumerate(tasks)])
        dry_run = bool(args.get("dry_run"))
        requests = [prompt_request(t, ephemeral=True, session_id=None,
                                   dry_run=dry_run or bool(t.get("dry_run")))
                    for t in tasks]
        report = run_parallel(gw.engine, requests, max_parallel=args.get("max_parallel") or None,
                              fail_fast=bool(args.get("fail_fast")))
        return ok(dump(ParallelResponseSchema, {
            "total_tasks": len(tasks),
            **_counts(report),
            "cancelled": report.cancelled,
            "total_duration_ms": report.total_duration_ms,
            "results": [task_data(o) for o in report.outcomes],
        }))


@blp.route("/chain")
class Chain(MethodView):
    @blp.arguments(ChainRequestSchema())
    @blp.response(200, ChainEnvelope, description="One result per step, in order.")
    @blp.doc(operationId="executeChain", summary="Run steps in sequence")
    @documents_errors(400, 413, 415, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Run steps one after the other (always ephemeral).

        `{{previous}}` in a prompt becomes the previous step's output. With
        `stop_on_failure`, steps after a failed one are reported as `skipped`;
        `pass_working_dir` runs a step without `workdir` in the previous step's directory.
        """
        gw = current_gateway()
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
        chain = [ChainStep(prompt_request(s, ephemeral=True, session_id=None,
                                          dry_run=dry_run),
                           name=s.get("name"))
                 for s in steps]
        report = run_chain(gw.engine, chain, stop_on_failure=bool(args.get("stop_on_failure")),
                           pass_working_dir=bool(args.get("pass_working_dir")))
        failed = report.failed_steps
        return ok(dump(ChainResponseSchema, {
            "total_steps": len(steps),
            "completed_steps": report.completed,
            "failed_step": failed[-1] if failed else None,
            "total_duration_ms": report.total_duration_ms,
            "results": [task_data(o, step=o.index + 1) for o in report.outcomes],
        }))


@blp.route("/compare")
class Compare(MethodView):
    @blp.arguments(CompareRequestSchema())
    @blp.response(200, CompareEnvelope, description="One result per backend, in order.")
    @blp.doc(operationId="executeCompare", summary="Ask several backends the same prompt")
    @documents_errors(400, 413, 415, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Send one prompt to several backends, concurrently unless `sequential`.

        Each result carries the model that was actually used. Always ephemeral.
        """
        gw = current_gateway()
        backends = [b.strip().lower() for b in args["backends"]]
        check_backends([(b, f"backends[{i}]") for i, b in enumerate(backends)])
        base = prompt_request(args, ephemeral=True, session_id=None)
        report = run_compare(gw.engine, base, backends,
                             sequential=bool(args.get("sequential")))
        return ok(dump(CompareResponseSchema, {
            "prompt": args["prompt"],
            "backends": backends,
            **_counts(report),
            "total_duration_ms": report.total_duration_ms,
            "results": [task_data(o) for o in report.outcomes],
        }))


# --------------------------------------------------------------------------- backends


@blp.route("/backends")
class Backends(MethodView):
    @blp.response(200, BackendListEnvelope)
    @blp.doc(operationId="listBackends", summary="List backends")
    @documents_errors(500)
    def get(self) -> Response:
        """Every enabled backend with availability, version, default model and binary path."""
        items = []
        for backend in current_gateway().engine.registry:
            path = backend.executable_path()
            items.append({
                "name": backend.name,
                "available": path is not None,
                "version": backend.version() if path else None,
                "default_model": backend.default_model,
                "path": path,
            })
        return ok({"backends": items})


# --------------------------------------------------------------------------- sessions


def session_data(session: Any) -> dict[str, Any]:
    return dump(SessionSchema, session.to_dict())


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.arguments(SessionListQuerySchema(), location="query")
    @blp.response(200, SessionListEnvelope)
    @blp.doc(operationId="listSessions", summary="List sessions")
    @documents_errors(400, 500)
    def get(self, args: dict[str, Any]) -> Response:
        """Sessions, most recently used first, with filters and pagination."""
        page = current_gateway().store.list(
            backend=args.get("backend"), status=args.get("status"), tag=args.get("tag"),
            limit=args["limit"], offset=args["offset"], visible_to=identify().principal,
            cursor=args.get("cursor"))
        return ok(dump(SessionListSchema, {
            "sessions": [s.to_dict() for s in page.sessions],
            "total": page.total, "limit": page.limit, "offset": page.offset,
            "next_cursor": page.next_cursor,
        }))


@blp.route("/sessions/<string:session_id>")
class SessionItem(MethodView):
    @blp.response(200, SessionEnvelope)
    @blp.doc(operationId="getSession", summary="Get a session")
    @documents_errors(400, 404, 500)
    def get(self, session_id: str) -> Response:
        """One session by full id or unique prefix (at least 4 hex characters)."""
        return ok(session_data(current_gateway().store.get(
            session_id, visible_to=identify().principal)))

    @blp.response(200, SessionDeletedEnvelope)
    @blp.doc(operationId="deleteSession", summary="Delete a session")
    @documents_errors(400, 404, 409, 500)
    def delete(self, session_id: str) -> Response:
        """Delete one session (409 while one of its turns is running)."""
        session = current_gateway().store.delete(session_id,
                                                 visible_to=identify().principal)
        return ok({"deleted": True, "id": session.id})
