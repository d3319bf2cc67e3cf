"""Anthropic's error format: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

The error ``type`` follows the HTTP status; a gateway whose run slots are all busy answers
529 ``overloaded_error``, as Anthropic's API does, so the SDKs back off and retry.
"""

from __future__ import annotations

from typing import Any

from clinvk.server.errors import ApiError, request_id

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
SATURATED_STATUS = 529


def error_type(status: int) -> str:
    """The Anthropic error type of an HTTP status."""
    return ERROR_TYPES.get(status, "api_error")



def error_body(err: ApiError, status: int) -> dict[str, Any]:
    """Every error under /anthropic/v1, in Anthropic's format."""
    return {"type": "error",
            "error": {"type": error_type(status), "message": err.message},
            "request_id": request_id()}
