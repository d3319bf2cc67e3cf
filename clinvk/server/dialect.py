"""The path every vendor dialect shares: request → engine run → JSON body or SSE stream.

A vendor dialect (``openai/``, ``anthropic/``) keeps only what is its own: its schemas, the
translation of its request into a prompt, the body of a finished run and a stream renderer.
A :class:`Dialect` gives it the rest:

* a blueprint under its URL prefix that checks request bodies (and the vendor's headers,
  when it names a check) and answers every error there in the vendor's error format, with
  the vendor's request-id header;
* :func:`start_run`, which prepares and starts the engine run (every refusal raised before
  a response begins, so it maps to a clean status code);
* :meth:`Dialect.respond`: with a stream renderer, an SSE response with the dialect's
  keep-alive frame while the backend is silent; without, the finished run's body, or the
  failed run as an error. A failed run is the agent having acted, so failure answers carry
  ``x-should-retry: false`` and the SDKs do not silently run the agent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flask import Response, request

from clinvk.core.engine import PromptRequest, RunHandle, RunResult
from clinvk.core.types import RunOrigin, RunStatus
from clinvk.server.errors import ApiError, ApiException, register_error_format, request_id
from clinvk.server.gateway import current_gateway
from clinvk.server.parsing import Blueprint, check_body_request
from clinvk.server.responses import json_response
from clinvk.server.security import identify
from clinvk.server.streaming import (
    SSE_MIMETYPE,
    event_frames,
    run_to_completion,
    stream_response,
)

if TYPE_CHECKING:
    from clinvk.core.events import Event
    from clinvk.server.compat import ModelTarget

NO_RETRY = {"x-should-retry": "false"}
# Codes whose failure happened after (or instead of) an agent run that retrying would repeat.
NO_RETRY_CODES = frozenset({"backend_failed", "backend_timeout", "run_cancelled",
                            "backend_unavailable"})
# The engine's code for "every run slot is busy" (some vendors give it a status of its own).
SATURATED = "server_saturated"


class StreamRenderer(Protocol):
    """Unified events → a vendor's SSE frames; stateful, one per stream."""

    def prelude(self) -> list[bytes]:
        """The frames sent before the first event (the vendor's stream opening)."""
        ...

    def __call__(self, event: Event) -> list[bytes] | bytes | None:
        """The frames of one event (None: nothing to send for it)."""
        ...


# A vendor's error body for an error and the HTTP status it is answered with.
ErrorBody = Callable[[ApiError, int], dict[str, Any]]


@dataclass
class Run:
    """A started engine run and the model target it was started for."""

    target: ModelTarget
    handle: RunHandle


class Dialect:
    """One vendor API's blueprint, error format and response path."""

    def __init__(self, name: str, import_name: str, *, url_prefix: str, description: str,
                 request_id_header: str, error_body: ErrorBody, keepalive_frame: bytes,
                 saturated_status: int | None = None,
                 check_headers: Callable[[], None] | None = None) -> None:
        self.url_prefix = url_prefix
        self.request_id_header = request_id_header
        self.error_body = error_body
        self.keepalive_frame = keepalive_frame
        self.saturated_status = saturated_status
        self.check_headers = check_headers
        self.blp = Blueprint(name, import_name, url_prefix=url_prefix, description=description)
        # One hook for every check of the dialect's requests (Flask pays a coroutine check
        # per hook on every request): the body's media type, then the vendor's headers.
        self.blp.before_request(self.check_request)
        self.blp.record_once(
            lambda state: register_error_format(state.app, url_prefix, self.error_response))

    def check_request(self) -> None:
        """Refuse a request the dialect cannot take before its view runs."""
        check_body_request()
        if self.check_headers is not None:
            self.check_headers()

    def error_response(self, err: ApiError) -> Response:
        """Every error under the dialect's prefix, in the vendor's format."""
        status = err.status
        if err.code == SATURATED and self.saturated_status is not None:
            status = self.saturated_status
        return json_response(self.error_body(err, status), status, self.error_headers(err))

    def error_headers(self, err: ApiError) -> dict[str, str]:
        headers = dict(err.headers)
        headers[self.request_id_header] = request_id()
        if err.code in NO_RETRY_CODES:
            headers.update(NO_RETRY)
        return headers

    def respond(self, run: Run, render: StreamRenderer | None,
                body: Callable[[RunResult], dict[str, Any]]) -> Response:
        """The answer to a started run: an SSE stream through ``render`` when given, else
        ``body`` of the finished run (a run that did not succeed is raised as an error)."""
        if render is not None:
            return self._sse_response(run, render)
        run_to_completion(run.handle, request.environ)
        result = require_ok(run.handle.result)
        return json_response(body(result), headers=run_headers(run))

    def _sse_response(self, run: Run, render: StreamRenderer) -> Response:
        handle = run.handle
        keepalive = current_gateway().config.server.stream_keepalive_secs or None
        environ = request.environ
        prelude = render.prelude()

        def frames() -> Iterator[bytes]:
            yield from prelude
            yield from event_frames(handle, render, environ=environ, keepalive_secs=keepalive,
                                    keepalive_frame=self.keepalive_frame)

        return stream_response(handle, frames(), mimetype=SSE_MIMETYPE,
                               headers=run_headers(run))


def start_run(target: ModelTarget, prompt: str, system_prompt: str | None, *,
              session_id: str | None = None, ephemeral: bool = True) -> Run:
    """Prepare and start a run for the caller; every refusal is raised here.

    The stateless vendor APIs run ephemerally (the client resends the whole conversation);
    a turn that continues a session runs on that session's backend.
    """
    gw = current_gateway()
    req = PromptRequest(
        prompt=prompt,
        backend=None if session_id else target.backend,
        model=target.model,
        system_prompt=system_prompt,
        session_id=session_id,
        ephemeral=ephemeral,
        principal=identify().principal,
        origin=_origin(request.path),
    )
    return Run(target, gw.engine.start(gw.engine.prepare(req)))


def _origin(path: str) -> RunOrigin:
    """The usage ledger's origin of a vendor-dialect run, from the route it came in by."""
    if path.startswith("/anthropic/"):
        return RunOrigin.ANTHROPIC
    if path.startswith("/openai/v1/responses"):
        return RunOrigin.OPENAI_RESPONSES
    return RunOrigin.OPENAI


def run_headers(run: Run) -> dict[str, str]:
    """Which backend and model served the request (informational)."""
    headers = {"X-Clinvk-Backend": run.handle.prepared.backend.name}
    if run.handle.prepared.resolved_model:
        headers["X-Clinvk-Model"] = run.handle.prepared.resolved_model
    return headers


def failed_run_error(result: RunResult) -> ApiException:
    """A run that did not end well: the agent may have acted, so clients must not retry."""
    message = result.error or "the backend run failed"
    if result.status == RunStatus.TIMEOUT:
        err = ApiError(504, "backend_timeout", message, headers=dict(NO_RETRY))
    elif result.status == RunStatus.CANCELLED:
        err = ApiError(503, "run_cancelled", message, headers=dict(NO_RETRY))
    else:
        assert result.status == RunStatus.FAILED, result.status
        err = ApiError(502, "backend_failed", message, headers=dict(NO_RETRY))
    return ApiException(err)


def require_ok(result: RunResult | None) -> RunResult:
    """The result of a successful run, or the failure raised as the vendor's error."""
    assert result is not None
    if result.status != RunStatus.OK:
        raise failed_run_error(result)
    return result
