"""CORS: which browser origins may call the gateway, with which headers (flask-cors)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from flask import Flask, request
from flask_cors import CORS

from clinvk.core.config import Config

log = logging.getLogger("clinvk.server.security")

#: Request headers browsers may send cross-origin: what the OpenAI and Anthropic SDKs
#: (and the native API) send. ``x-stainless-*`` is the SDKs' telemetry family.
CORS_ALLOW_HEADERS = (
    "Accept", "Authorization", "Content-Type", "X-Api-Key", "X-Request-ID",
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "OpenAI-Organization", "OpenAI-Project", "OpenAI-Beta", "Idempotency-Key",
    re.compile(r"x-stainless-[a-z0-9-]+\Z", re.IGNORECASE),
)
CORS_EXPOSE_HEADERS = (
    "X-Request-ID", "request-id", "Retry-After", "X-RateLimit-Limit",
    "X-RateLimit-Remaining", "X-RateLimit-Reset", "x-should-retry",
)
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Default origins: the local machine, any port, http or https.
DEFAULT_CORS_ORIGINS = (
    re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?\Z", re.IGNORECASE),
)



def is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)



def cors_origins(configured: Iterable[str]) -> list[Any] | str:
    """Configured origins as anchored patterns; ``*`` in an origin matches within a label."""
    items = list(configured)
    if not items:
        return list(DEFAULT_CORS_ORIGINS)
    if "*" in items:
        return "*"
    out: list[Any] = []
    for origin in items:
        pattern = re.escape(origin.rstrip("/")).replace(r"\*", r"[^/]*")
        out.append(re.compile(pattern + r"\Z", re.IGNORECASE))
    return out


def init_cors(app: Flask, config: Config) -> None:
    srv = config.server
    origins = cors_origins(srv.cors_allowed_origins)
    wildcard = origins == "*"
    if wildcard and srv.cors_allow_credentials:
        log.warning("CORS: server.cors_allow_credentials with origin '*' lets every web "
                    "site make credentialed requests; the origin is echoed, not '*'")
    CORS(app, resources={r"/*": {}}, origins=origins, methods=list(CORS_METHODS),
         allow_headers=list(CORS_ALLOW_HEADERS), expose_headers=list(CORS_EXPOSE_HEADERS),
         supports_credentials=srv.cors_allow_credentials, max_age=srv.cors_max_age or None,
         send_wildcard=wildcard and not srv.cors_allow_credentials, vary_header=True)

