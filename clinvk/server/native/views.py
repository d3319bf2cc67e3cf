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
from marshmallow import Schema

from clinvk.core.engine import RunResult
from clinvk.core.errors import InvalidRequest
from clinvk.core.plans import run_plan
from clinvk.core.store import Session, SessionJsonPage, SessionPage
from clinvk.core.types import JobKind, RunStatus
from clinvk.server.apidoc import error_responses
from clinvk.server.errors import ApiError, ApiException
from clinvk.server.gateway import current_gateway
from clinvk.server.native.plans import PLAN_BUILDERS
from clinvk.server.native.run_requests import prompt_request
from clinvk.server.native.schemas import (
    ApiErrorSchema,
    BackendListEnvelope,
    ChainEnvelope,
    ChainRequestSchema,
    ChainResponseSchema,
    CompareEnvelope,
    CompareRequestSchema,
    CompareResponseSchema,
    JobEnvelope,
    ParallelEnvelope,
    ParallelRequestSchema,
    ParallelResponseSchema,
    PromptEnvelope,
    PromptRequestSchema,
    SessionDeletedEnvelope,
    SessionEnvelope,
    SessionListEnvelope,
    SessionListQuerySchema,
    dump,
)
from clinvk.server.parsing import Blueprint, check_body_request
from clinvk.server.responses import envelope_enabled, json_response, json_response_with_items
from clinvk.server.security import identify
from clinvk.server.streaming import NDJSON_MIMETYPE, ndjson_response, run_to_completion

URL_PREFIX = "/api/v1"
API_TAG = "api"

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

    return error_responses(blp, ApiErrorSchema,
                           {status: _ERROR_TEXT.get(status, "Error") for status in statuses})


# --------------------------------------------------------------------------- helpers


def enveloped(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"success": True, "data": data} if envelope_enabled() else data


def ok(data: Mapping[str, Any], status: int = 200) -> Response:
    return json_response(enveloped(data), status)


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
        callback_url = args.pop("callback_url", None)
        if args.pop("background", False) and gw.jobs is not None:
            return submitted_job(gw.jobs.submit_prompt(
                prompt_request(args, tags=[API_TAG, "job"]), callback_url=callback_url))
        _no_callback_without_job(callback_url)
        streamed = args.get("output_format") == "stream-json"
        req = prompt_request(args, tags=[API_TAG], live_events=streamed)
        prepared = engine.prepare(req)
        handle = engine.start(prepared)
        if streamed:
            return ndjson_response(handle, request.environ)
        run_to_completion(handle, request.environ)
        assert handle.result is not None
        return result_response(handle.result)


# --------------------------------------------------------------------------- orchestration


def _no_callback_without_job(callback_url: str | None) -> None:
    if callback_url is not None:
        raise InvalidRequest("is only for jobs: add \"background\": true",
                             field="callback_url")


def _run_or_submit(args: dict[str, Any], kind: JobKind, schema: type[Schema]) -> Response:
    """Run the route's plan now, or (``background: true``) queue it as a job."""
    gw = current_gateway()
    background = args.pop("background", False)
    callback_url = args.pop("callback_url", None)
    plan = PLAN_BUILDERS[kind](args)
    if background and gw.jobs is not None:
        return submitted_job(gw.jobs.submit_plan(plan, callback_url=callback_url))
    _no_callback_without_job(callback_url)
    _report, body = run_plan(gw.engine, plan)
    return ok(dump(schema, body))


_BACKGROUND_202 = "With `background: true`: the queued job (docs/jobs.md); Location names it."


@blp.route("/parallel")
class Parallel(MethodView):
    @blp.arguments(ParallelRequestSchema())
    @blp.response(200, ParallelEnvelope, description="Per-task results in input order.")
    @blp.alt_response(202, schema=JobEnvelope, description=_BACKGROUND_202)
    @blp.doc(operationId="executeParallel", summary="Run tasks in parallel")
    @documents_errors(400, 413, 415, 429, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Run independent tasks at once (always ephemeral).

        At most `max_parallel` run at a time. With `fail_fast`, the first failure cancels
        running tasks (their process groups are killed) and queued ones; those report
        status `cancelled`. The response is 200 whatever the tasks did.
        """
        return _run_or_submit(args, JobKind.PARALLEL, ParallelResponseSchema)


@blp.route("/chain")
class Chain(MethodView):
    @blp.arguments(ChainRequestSchema())
    @blp.response(200, ChainEnvelope, description="One result per step, in order.")
    @blp.alt_response(202, schema=JobEnvelope, description=_BACKGROUND_202)
    @blp.doc(operationId="executeChain", summary="Run steps in sequence")
    @documents_errors(400, 413, 415, 429, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Run steps one after the other (always ephemeral).

        `{{previous}}` in a prompt becomes the previous step's output. With
        `stop_on_failure`, steps after a failed one are reported as `skipped`;
        `pass_working_dir` runs a step without `workdir` in the previous step's directory.
        """
        return _run_or_submit(args, JobKind.CHAIN, ChainResponseSchema)


@blp.route("/compare")
class Compare(MethodView):
    @blp.arguments(CompareRequestSchema())
    @blp.response(200, CompareEnvelope, description="One result per backend, in order.")
    @blp.alt_response(202, schema=JobEnvelope, description=_BACKGROUND_202)
    @blp.doc(operationId="executeCompare", summary="Ask several backends the same prompt")
    @documents_errors(400, 413, 415, 429, 500)
    def post(self, args: dict[str, Any]) -> Response:
        """Send one prompt to several backends, concurrently unless `sequential`.

        Each result carries the model that was actually used. Always ephemeral.
        """
        return _run_or_submit(args, JobKind.COMPARE, CompareResponseSchema)


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


def public_session(record: dict[str, Any]) -> dict[str, Any]:
    """A session record as the API shows it (``SessionSchema``, in its field order): every
    field but the owner's key id. The record is this request's own, so it is trimmed in
    place; tests/server/test_sessions_body.py checks the result against the schema's dump."""
    del record["owner"]
    return record


def session_data(session: Session) -> dict[str, Any]:
    return public_session(session.to_dict())


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.arguments(SessionListQuerySchema(), location="query")
    @blp.response(200, SessionListEnvelope)
    @blp.doc(operationId="listSessions", summary="List sessions")
    @documents_errors(400, 500)
    def get(self, args: dict[str, Any]) -> Response:
        """Sessions, most recently used first, with filters and pagination."""
        store = current_gateway().store
        query = {
            "backend": args.get("backend"), "status": args.get("status"),
            "tag": args.get("tag"), "limit": args["limit"], "offset": args["offset"],
            "visible_to": identify().principal, "cursor": args.get("cursor"),
        }
        # Each row's stored record_json is already its SessionSchema item (every field but
        # the owner, in order): the page is those bytes joined into the envelope.
        encoded = store.list_json(**query)
        if encoded.complete:
            return json_response_with_items(enveloped(_page_data(encoded, [])), "sessions",
                                            encoded.encoded)  # type: ignore[arg-type]
        page = store.list(**query)  # a row orjson cannot encode: the page as records
        return ok(_page_data(page, [public_session(r) for r in page.records]))


def _page_data(page: SessionPage | SessionJsonPage, records: list[dict[str, Any]]
               ) -> dict[str, Any]:
    return {"sessions": records, "total": page.total, "limit": page.limit,
            "offset": page.offset, "next_cursor": page.next_cursor}


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
