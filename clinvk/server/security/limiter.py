"""The rate limit (flask-limiter): one application-wide limit per API key or client IP.

Loaded only when ``server.rate_limit_enabled`` is on (flask-limiter and ``limits`` are
~11 MB per worker; docs/performance.md).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from clinvk.core.config import Config
from clinvk.server.errors import ApiError, render
from clinvk.server.runtime.connection import close_after_response
from clinvk.server.security.bodies import large_unread_body
from clinvk.server.security.clients import clientip_of
from clinvk.server.security.identity import identify

log = logging.getLogger("clinvk.server.security")


def rate_limit_key() -> str:
    identity = identify()
    if identity.key_id:
        return f"key:{identity.key_id}"
    return f"ip:{clientip_of()}"


def rate_limit_string(rps: int, burst: int) -> str | None:
    """``server.rate_limit_rps``/``burst`` as a flask-limiter moving-window limit.

    At most ``max(burst, rps)`` requests in any window of ``round(max(burst, rps) / rps)``
    seconds: bursts up to ``burst`` at once, about ``rps`` per second sustained. ``burst``
    0 means twice the rate (as in the Go tool). ``rps`` 0 turns limiting off.
    """
    if rps <= 0:
        return None
    amount = max(burst or 2 * rps, rps)
    window = max(1, round(amount / rps))
    return f"{amount} per {window} second"


def _rate_limited(exc: RateLimitExceeded) -> Response:
    limit = getattr(exc, "limit", None)
    text = f" ({limit.limit})" if limit is not None and getattr(limit, "limit", None) else ""
    err = ApiError(429, "rate_limited", f"rate limit exceeded{text}; retry after the "
                   "time in Retry-After")
    err.headers["Retry-After"] = "1"  # refined by flask-limiter's header injection
    if large_unread_body():
        close_after_response()
    return render(err)


def _tidy_retry_after(response: Response) -> Response:
    """Runs after flask-limiter's header injection (registered before it).

    flask-limiter puts ``Retry-After`` on every response and computes it as whole seconds
    to the window reset, which can round down to 0: keep it only where it means something
    (errors) and never below one second on a 429.
    """
    if response.status_code < 400:
        response.headers.pop("Retry-After", None)
    elif response.status_code == 429:
        value = response.headers.get("Retry-After", "")
        if not value.isdigit() or int(value) < 1:
            response.headers["Retry-After"] = "1"
    return response


def init_limiter(app: Flask, config: Config) -> Limiter | None:
    srv = config.server
    limit = rate_limit_string(srv.rate_limit_rps, srv.rate_limit_burst)
    if not srv.rate_limit_enabled or limit is None:
        return None
    storage_options: dict[str, Any] = {}
    if srv.rate_limit_storage_uri.startswith(("redis://", "rediss://", "redis+")):
        storage_options = {"socket_connect_timeout": 2, "socket_timeout": 2}
    app.after_request(_tidy_retry_after)  # after_request hooks run in reverse order
    limiter = Limiter(
        rate_limit_key,
        application_limits=[limit],
        strategy="moving-window",
        storage_uri=srv.rate_limit_storage_uri,
        storage_options=storage_options,
        headers_enabled=True,
        key_prefix="clinvk",
        # Not the bare endpoint: flask-limiter skips requests without one (404s) and
        # endpoints named "*.static" (the docs assets); here every request counts.
        request_identifier=lambda: f"{request.endpoint or '-'}:route",
        # Storage down (e.g. redis restarting): limit per worker in memory meanwhile,
        # rather than failing requests or dropping the limit.
        in_memory_fallback=[limit],
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    log.info("rate limiting: %s per client (%s)", limit,
             srv.rate_limit_storage_uri.partition("://")[0] + "://")
    return limiter

