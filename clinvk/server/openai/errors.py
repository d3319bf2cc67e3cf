"""OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from clinvk.server.errors import ApiError

# HTTP status -> OpenAI error `type`.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "requests",
}
# Our machine code -> the code OpenAI uses for the same situation.
ERROR_CODES = {
    "unauthorized": "invalid_api_key",
    "rate_limited": "rate_limit_exceeded",
    "invalid_request": None,
}


def error_body(err: ApiError, status: int) -> dict[str, Any]:
    """OpenAI's error body: message, type (by status), param (the field), code."""
    param = err.field if err.field not in (None, "body") else None
    return {"error": {
        "message": err.message,
        "type": ERROR_TYPES.get(status, "server_error"),
        "param": param,
        "code": ERROR_CODES.get(err.code, err.code),
    }}
