"""One place that turns every failure into an HTTP response (docs/api.md, Errors).

Everything that can go wrong in a request ends up here as an :class:`ApiError` (status,
machine code, human message, offending field, optional details/data/headers):

* engine errors (:class:`clinvk.core.errors.ClinvkError`) by their ``code``;
* request parsing: malformed JSON, a wrong content type, an empty body, schema
  violations from flask-smorest/webargs (always 400 with the field named);
* werkzeug's HTTP errors (404/405/413/...), so unknown routes answer in the API's format;
* anything unexpected: 500, logged with its traceback, never echoed to the client.

How an :class:`ApiError` is *rendered* depends on where the request went: each API style
registers a formatter for its URL prefix (:func:`register_error_format`); the native
envelope (or its bare Go-compatible variant) is the default. The OpenAI/Anthropic
blueprints and the security layer plug in here instead of writing their own handlers:
raise :class:`ApiException` (or any ``ClinvkError``) and the right format is chosen.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, Response, current_app, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException

from clinvk.core.errors import (
    AmbiguousPrefix,
    BackendUnavailable,
    ClinvkError,
    ConfigError,
    InvalidRequest,
    NotFound,
    PolicyViolation,
    Saturated,
    SessionBusy,
    StoreError,
    StoreUnavailable,
)
from clinvk.server.responses import envelope_enabled, json_response

log = logging.getLogger("clinvk.server")

# Machine code -> HTTP status. Codes not listed fall back to the class (see _status_for).
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "invalid_json": 400,
    "unknown_backend": 400,
    "ambiguous_session_prefix": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "session_busy": 409,
    "job_not_finished": 409,
    "request_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "job_queue_full": 429,
    "budget_exceeded": 429,
    "config_error": 500,
    "store_error": 500,
    "internal_error": 500,
    "backend_failed": 502,
    "backend_unavailable": 503,
    "server_saturated": 503,
    "broker_unavailable": 503,
    "host_unavailable": 503,
    "store_unavailable": 503,
    "run_cancelled": 503,
    "backend_timeout": 504,
}

_STATUS_BY_CLASS: tuple[tuple[type[ClinvkError], int], ...] = (
    (AmbiguousPrefix, 400),
    (InvalidRequest, 400),
    (PolicyViolation, 403),
    (NotFound, 404),
    (SessionBusy, 409),
    (Saturated, 503),
    (BackendUnavailable, 503),
    (StoreError, 500),
    (ConfigError, 500),
)

# Codes whose message may leak server internals (paths, SQL): replaced for the client.
INTERNAL_CODES = frozenset({"store_error", "store_unavailable", "config_error",
                            "internal_error"})

RETRY_AFTER_UNAVAILABLE = 30
STORE_UNAVAILABLE_MESSAGE = ("the session store cannot be reached right now (sessions, jobs "
                             "and keys live there); try again shortly")


@dataclasses.dataclass
class ApiError:
    """A failure, independent of the body format it will be rendered in."""

    status: int
    code: str
    message: str
    field: str | None = None
    details: Any = None
    data: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def detail_dict(self) -> dict[str, Any] | None:
        """``details`` with the offending ``field`` folded in (None when there is neither)."""
        if self.field is None and self.details is None:
            return None
        out: dict[str, Any] = {}
        if self.field is not None:
            out["field"] = self.field
        if isinstance(self.details, Mapping):
            for key, value in self.details.items():
                out.setdefault(key, value)
        elif self.details is not None:
            out["info"] = self.details
        return out


class ApiException(Exception):
    """Raise from anywhere in a request to answer with ``error`` in the route's format."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def api_error(status: int, code: str, message: str, **kwargs: Any) -> ApiException:
    """Shorthand: ``raise api_error(401, "unauthorized", "missing API key")``."""
    return ApiException(ApiError(status, code, message, **kwargs))


# --------------------------------------------------------------------------- conversion


def _status_for(exc: ClinvkError) -> int:
    if exc.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[exc.code]
    for klass, status in _STATUS_BY_CLASS:
        if isinstance(exc, klass):
            return status
    return 500


def from_clinvk(exc: ClinvkError) -> ApiError:
    status = _status_for(exc)
    if isinstance(exc, StoreUnavailable):
        # The cause names the database: logged, never sent; the client learns to retry.
        log.warning("request %s: %s", request_id(), exc.message)
        return ApiError(503, exc.code, STORE_UNAVAILABLE_MESSAGE,
                        headers={"Retry-After": str(max(1, int(exc.retry_after)))})
    if status == 500:
        log.error("request %s failed: %s: %s", request_id(), exc.code, exc.message)
        return ApiError(500, exc.code if exc.code in INTERNAL_CODES else "internal_error",
                        internal_message(exc))
    err = ApiError(status, exc.code, exc.message, field=exc.field, details=exc.details)
    if isinstance(exc, Saturated):
        err.headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    elif isinstance(exc, BackendUnavailable):
        err.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return err


def internal_message(exc: ClinvkError) -> str:
    """What a client may learn about an internal failure: its kind, never paths or SQL."""
    details = exc.details if isinstance(exc.details, Mapping) else {}
    if exc.code == "store_error" and details.get("reason") == "disk_full":
        return ("the session store cannot save anything: the disk holding it is full; "
                "see the server log")
    return _internal_message(exc.code)


def _internal_message(code: str) -> str:
    if code == "store_unavailable":
        return STORE_UNAVAILABLE_MESSAGE
    if code == "store_error":
        return "the session store is not usable right now; see the server log"
    if code == "config_error":
        return "the server configuration is invalid; see the server log"
    return "internal server error; see the server log"


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        elif part in ("_schema", "json", "query", "view_args", "path"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def flatten_messages(messages: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """marshmallow/webargs nested error messages -> ``[(field path, message), ...]``."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            out.extend(flatten_messages(value, (*prefix, key)))
    elif isinstance(messages, list | tuple):
        for item in messages:
            if isinstance(item, Mapping | list | tuple):
                out.extend(flatten_messages(item, prefix))
            else:
                out.append((_path(prefix) or "body", str(item)))
    else:
        out.append((_path(prefix) or "body", str(messages)))
    return out


def validation_error(messages: Any, *, location: str = "body") -> ApiError:
    problems = flatten_messages(messages)
    if not problems:
        problems = [("body", "invalid request")]
    first_field, first_message = problems[0]
    text = f"{first_field}: {first_message}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return ApiError(
        400, "invalid_request", text, field=first_field,
        details={"location": location,
                 "errors": [{"field": f, "message": m} for f, m in problems]},
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def from_http(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    if isinstance(exc, ClientDisconnected):
        if _caused_by(exc, TimeoutError):  # gunicorn socket timeout while reading the body
            return ApiError(408, "request_timeout", "reading the request body timed out "
                            "(server.read_timeout_secs)", field="body")
        return ApiError(400, "invalid_request", "the request body ended before all of it "
                        "arrived", field="body")
    data = getattr(exc, "data", None) or {}
    if isinstance(data, Mapping) and "messages" in data:
        messages = data["messages"]
        location = next(iter(messages), "body") if isinstance(messages, Mapping) else "body"
        if messages == {"json": ["Invalid JSON body."]}:
            cause = getattr(exc, "exc", None)
            reason = f": {cause}" if cause else ""
            return ApiError(400, "invalid_json", f"request body is not valid JSON{reason}",
                            field="body")
        err = validation_error(messages, location="query" if location == "query" else "body")
        return err
    if status == 404:
        return ApiError(404, "not_found", f"no route for {request.method} {request.path}")
    if status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        err = ApiError(405, "method_not_allowed",
                       f"method {request.method} is not allowed for {request.path}"
                       + (f"; allowed: {', '.join(allowed)}" if allowed else ""))
        if allowed:
            err.headers["Allow"] = ", ".join(allowed)
        return err
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        text = "request body is too large"
        if limit:
            text += f" (limit {limit} bytes, server.max_request_body_bytes)"
        return ApiError(413, "request_too_large", text, field="body")
    if status == 415:
        return ApiError(415, "unsupported_media_type",
                        f"Content-Type {request.mimetype or '(none)'!r} is not supported; "
                        "send application/json", field="Content-Type")
    if status == 400:
        message = data.get("message") if isinstance(data, Mapping) else None
        return ApiError(400, "invalid_request", message or exc.description or "bad request")
    if status >= 500:
        return ApiError(status, "internal_error", _internal_message("internal_error"))
    code = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
    return ApiError(status, code, exc.description or exc.name or "error")


# --------------------------------------------------------------------------- rendering

Formatter = Callable[[ApiError], Response]
_FORMATS_KEY = "clinvk.error_formats"


def register_error_format(app: Flask, url_prefix: str, formatter: Formatter) -> None:
    """Render errors of requests under ``url_prefix`` with ``formatter`` (longest prefix wins)."""
    formats: list[tuple[str, Formatter]] = app.extensions.setdefault(_FORMATS_KEY, [])
    formats[:] = [(p, f) for p, f in formats if p != url_prefix]
    formats.append((url_prefix.rstrip("/"), formatter))
    formats.sort(key=lambda item: len(item[0]), reverse=True)


def _formatter_for(path: str) -> Formatter:
    for prefix, formatter in current_app.extensions.get(_FORMATS_KEY, []):
        if path == prefix or path.startswith(prefix + "/"):
            return formatter
    return native_error_response


_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """This request's id: a sane client-supplied ``X-Request-ID``, else a fresh one."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = choose_request_id(request.headers.get("X-Request-ID", ""))
    return rid


def choose_request_id(supplied: str) -> str:
    """The client's ``X-Request-ID`` when it is sane (short, no spaces or quotes), else a
    fresh one: the id is echoed in a header and written to logs."""
    return supplied if _REQUEST_ID_RE.fullmatch(supplied) else uuid.uuid4().hex


def native_error_body(err: ApiError) -> dict[str, Any]:
    """The native body: envelope ``{success, error, code, details?, data?}`` or bare Go form."""
    if envelope_enabled():
        body: dict[str, Any] = {"success": False, "error": err.message, "code": err.code}
        details = err.detail_dict()
        if details is not None:
            body["details"] = details
        if err.data is not None:
            body["data"] = err.data
        return body
    body = {"error": err.code, "message": err.message}
    details = err.detail_dict()
    if details is not None:
        body["details"] = details
    if err.data is not None:
        body["data"] = err.data
    return body


def native_error_response(err: ApiError) -> Response:
    return json_response(native_error_body(err), err.status, err.headers)


def render(err: ApiError) -> Response:
    return _formatter_for(request.path)(err)


# --------------------------------------------------------------------------- handlers


def _handle_api_exception(exc: ApiException) -> Response:
    return render(exc.error)


def _handle_clinvk(exc: ClinvkError) -> Response:
    return render(from_clinvk(exc))


def _handle_validation(exc: ValidationError) -> Response:
    return render(validation_error(exc.messages))


def _handle_http(exc: HTTPException) -> Response:
    return render(from_http(exc))


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _handle_http(exc)
    if isinstance(exc, TimeoutError):  # a request body read stalled (gunicorn socket timeout)
        return render(ApiError(408, "request_timeout",
                               "reading the request body timed out (server.read_timeout_secs)"))
    log.exception("request %s: unexpected error in %s %s", request_id(), request.method,
                  request.path)
    return render(ApiError(500, "internal_error", _internal_message("internal_error")))


def init_app(app: Flask) -> None:
    """Install the handlers (after flask-smorest's ``Api``, whose own handler they replace)."""
    app.register_error_handler(ApiException, _handle_api_exception)
    app.register_error_handler(ClinvkError, _handle_clinvk)
    app.register_error_handler(ValidationError, _handle_validation)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(Exception, _handle_unexpected)
