"""Meta endpoints (docs/api.md, Meta): ``/health``, ``/openapi.json`` and offline ``/docs``.

``/docs`` is Swagger UI served from files packaged in ``clinvk/server/static/swagger-ui``
(vendored from the ``swagger-ui-dist`` npm package, see its VERSION file): no CDN, so it
works on an air-gapped host. The page and its assets use relative URLs, so they also work
behind a reverse proxy that mounts the gateway under a path prefix.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import flask
from flask import Response, current_app
from flask.views import MethodView

from clinvk import __version__
from clinvk.core.errors import ClinvkError, StoreUnavailable
from clinvk.core.types import BrokerState, HealthStatus
from clinvk.server.gateway import Gateway, current_gateway
from clinvk.server.native.schemas import HealthSchema
from clinvk.server.parsing import Blueprint
from clinvk.server.responses import json_response

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_DIR = STATIC_DIR / "swagger-ui"

log = logging.getLogger("clinvk.server")

blp = Blueprint("meta", __name__, description="Health, OpenAPI document and API docs.")


#: Probes and proxies must never answer ``/health`` from a cache.
HEALTH_HEADERS = {"Cache-Control": "no-store"}


def format_uptime(seconds: float) -> str:
    """Go-style duration rounded to seconds: ``45s``, ``3m25s``, ``1h0m0s``."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def health_report(gw: Gateway) -> tuple[dict[str, Any], int]:
    """The ``/health`` body (in HealthSchema's shape) and its status; needs no request, so
    :mod:`clinvk.server.fastpath` can answer probes without the Flask stack."""
    uptime = time.monotonic() - gw.started
    runner = gw.engine.runner
    backends = [{"name": b.name, "available": runner.available(b)} for b in gw.engine.registry]
    execution = runner.status()
    store: dict[str, Any]
    outage = False
    try:
        store = {"available": True, "session_count": gw.store.count()}
    except StoreUnavailable as exc:
        # Shared by every gateway: taking them all out of the balancer would answer
        # nobody; the gateway stays in and its routes answer 503 store_unavailable.
        log.warning("health: session store unreachable: %s", exc.message)
        outage = True
        store = {"available": False, "session_count": None,
                 "error": "the session store cannot be reached right now"}
    except ClinvkError as exc:
        log.error("health: session store unusable: %s", exc.message)
        store = {"available": False, "session_count": None,
                 "error": "the session store cannot be read; see the server log"}
    if not store["available"] and not outage:
        status = HealthStatus.UNHEALTHY
    elif outage or not any(b["available"] for b in backends):
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.OK
    body = {
        "status": status,
        "version": __version__,
        "uptime": format_uptime(uptime),
        "uptime_millis": int(uptime * 1000),
        "backends": backends,
        "session_store": store,
    }
    if execution is not None:
        body["execution"] = execution
        if execution.get("broker") != BrokerState.OK and status == HealthStatus.OK:
            body["status"] = HealthStatus.DEGRADED  # nothing can be queued until the broker is back
    return body, 503 if status == HealthStatus.UNHEALTHY else 200


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema, description="ok or degraded (no backend installed).")
    @blp.alt_response(503, schema=HealthSchema, description="unhealthy: the session store "
                      "is not usable.")
    @blp.doc(operationId="healthCheck", summary="Health check", security=[])
    def get(self) -> Response:
        """Liveness and readiness: backends' availability and the session store (no scan)."""
        body, status = health_report(current_gateway())
        return json_response(body, status, HEALTH_HEADERS)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document flask-smorest built from every registered blueprint."""
    api = current_app.extensions["clinvk.api"]
    return api.spec.to_dict()


@blp.route("/openapi.json")
class OpenApi(MethodView):
    @blp.doc(operationId="openapiDocument", summary="OpenAPI document", security=[],
             responses={"200": {"description": "This document (OpenAPI 3)."}})
    def get(self) -> Response:
        """The OpenAPI 3 document describing every route."""
        return json_response(openapi_document())


_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>clinvk API</title>
  <link rel="icon" type="image/png" href="docs/static/swagger-ui/favicon-32x32.png">
  <link rel="stylesheet" href="docs/static/swagger-ui/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="docs/static/clinvk-docs.js"></script>
</body>
</html>
"""

@blp.route("/docs")
class Docs(MethodView):
    @blp.doc(operationId="apiDocs", summary="Interactive API docs", security=[],
             responses={"200": {"description": "Swagger UI (HTML), served offline.",
                                "content": {"text/html": {"schema": {"type": "string"}}}}})
    def get(self) -> Response:
        """Swagger UI for this server, from packaged assets (works offline)."""
        return current_app.response_class(_DOCS_PAGE, mimetype="text/html")


# The assets are plain static files on a plain Flask blueprint: not API operations, so
# they stay out of the OpenAPI document.
assets = flask.Blueprint("docs_assets", __name__, static_folder=str(STATIC_DIR),
                         static_url_path="/docs/static")
