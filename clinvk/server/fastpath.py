"""``GET /health`` answered in front of Flask when no layer of the stack has work for it.

Load balancers and orchestrators probe ``/health`` every few seconds on every worker, so
it is the gateway's most frequent request; through Flask it costs the full stack
(dispatch, the security and request-id hooks, flask-smorest's view wrapper) for a body
that needs none of it. This WSGI middleware answers the probe itself with the same
bytes, status and headers the Flask route gives (the body comes from
:func:`clinvk.server.meta.health_report` in both cases). It is installed only when the
configuration leaves nothing for the stack to do on ``/health``:

* rate limiting off (every path counts against the limit, ``/health`` included);
* metrics off (every request is timed and counted);
* no ``server.trusted_proxies`` (``REMOTE_ADDR`` would become the forwarded client);

and per request it steps aside for anything unusual: a method other than GET/HEAD, an
``Origin`` header (CORS answers it), a request body (the size limit judges it). Those
requests, and every other path, go to Flask untouched. Numbers: docs/performance.md.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from clinvk.server.errors import choose_request_id
from clinvk.server.gateway import EXTENSION_KEY, Gateway
from clinvk.server.meta import HEALTH_HEADERS, health_report
from clinvk.server.responses import json_bytes

HEALTH_PATH = "/health"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastPaths:
    """WSGI middleware: ``/health`` here, everything else to ``app``."""

    def __init__(self, app: WsgiApp, gateway: Gateway, write_timeout: float | None) -> None:
        self.app = app
        self.gateway = gateway
        self.write_timeout = write_timeout

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and _plain_probe(environ):
            return self.health(environ, start_response)
        return self.app(environ, start_response)

    def health(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        body, status = health_report(self.gateway)
        data = json_bytes(body)  # a health body is plain JSON types: never the app fallback
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                   *HEALTH_HEADERS.items(),
                   ("X-Request-ID", choose_request_id(environ.get("HTTP_X_REQUEST_ID", "")))]
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket):  # as the Flask path does for a slow client
            sock.settimeout(self.write_timeout)
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]


def _plain_probe(environ: dict[str, Any]) -> bool:
    """A GET/HEAD without a body and without an ``Origin`` header."""
    return (environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and "HTTP_ORIGIN" not in environ
            and environ.get("CONTENT_LENGTH", "") in ("", "0")
            and "HTTP_TRANSFER_ENCODING" not in environ)


def init_app(app: Flask) -> None:
    """Wrap ``app.wsgi_app`` when nothing configured has work on ``/health`` (an
    ``EXTENSIONS`` hook of :mod:`clinvk.server.app`, run last)."""
    gateway: Gateway = app.extensions[EXTENSION_KEY]
    srv = gateway.config.server
    if srv.rate_limit_enabled or srv.metrics_enabled or srv.trusted_proxies:
        return
    app.wsgi_app = FastPaths(app.wsgi_app, gateway,  # type: ignore[method-assign]
                             srv.write_timeout_secs or None)
