"""The Flask app factory: one engine per app, one blueprint per API style.

Seats for what comes next are explicit lists, so adding an API style or a cross-cutting
layer is one line here and no edit anywhere else:

* :data:`API_BLUEPRINTS` — flask-smorest blueprints (documented in ``/openapi.json``);
  the OpenAI/Anthropic blueprints go here. A blueprint whose errors must not use the
  native envelope registers its formatter with
  :func:`clinvk.server.errors.register_error_format` from its ``init_app``/record hook.
* :data:`EXTENSIONS` — ``init_app(app)`` callables run after the blueprints are in place:
  the security layer (auth, rate limits, CORS, metrics) goes here.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from flask import Flask, Response, request
from flask_smorest import Api

from clinvk import __version__
from clinvk.core.config import Config, clinvk_home, load_config
from clinvk.core.engine import Engine
from clinvk.core.errors import StoreError
from clinvk.core.jobs import JobLimits, JobService
from clinvk.core.store import Store, configured_store
from clinvk.server import errors as error_handling
from clinvk.server.gateway import EXTENSION_KEY, Gateway
from clinvk.server.native.schemas import ApiErrorSchema

log = logging.getLogger("clinvk.server")

#: flask-smorest blueprints, as ``module:attribute``, in registration order.
API_BLUEPRINTS: list[str] = [
    "clinvk.server.meta:blp",
    "clinvk.server.native.views:blp",
    "clinvk.server.native.jobs:blp",
    "clinvk.server.native.usage:blp",
    "clinvk.server.openai.views:blp",
    "clinvk.server.anthropic.views:blp",
]

#: Plain Flask blueprints (not API operations, not in the OpenAPI document).
PLAIN_BLUEPRINTS: list[str] = [
    "clinvk.server.meta:assets",
    "clinvk.server.dashboard:page",
]

#: ``init_app(app)`` hooks for cross-cutting layers, run last, in this order.
EXTENSIONS: list[str] = [
    "clinvk.server.observability:init_app",  # first: it also times what security refuses
    "clinvk.server.security:init_app",
    "clinvk.server.fastpath:init_app",  # last: /health in front of all of the above
]

API_DESCRIPTION = (
    "clinvk runs the Claude Code, Codex and Gemini CLIs as a service. Native routes live "
    "under /api/v1 and answer with {\"success\": true, \"data\": ...} (or the bare data "
    "object when server.response_envelope is false); failures carry an HTTP status, a "
    "machine `code` and the offending field. Every response has an X-Request-ID header."
)


class GatewayApi(Api):
    """flask-smorest ``Api`` documenting the native error body as the default error.

    The OpenAPI document is built when it is first read (``/openapi.json``, ``/docs``), not
    at start-up: each blueprint's part, and each layer's (:meth:`document`), is kept as a
    step and the steps run in registration order on the first read of :attr:`spec`, so the
    document is the one an eager build gives, and an idle worker holds no spec (memory:
    docs/performance.md, "Structural changes").
    """

    ERROR_SCHEMA = ApiErrorSchema

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._doc_steps: list[Callable[[], None]] = []
        self._doc_lock = threading.RLock()  # steps run once, by the first reader
        super().__init__(*args, **kwargs)

    @property
    def spec(self) -> APISpec:
        with self._doc_lock:
            steps, self._doc_steps = self._doc_steps, []
            for step in steps:  # a step reading spec itself finds the list taken
                step()
            return self._spec

    @spec.setter
    def spec(self, value: APISpec) -> None:
        self._spec = value

    def document(self, step: Callable[[], None]) -> None:
        """Add to the document when it is built (after everything registered before)."""
        with self._doc_lock:
            self._doc_steps.append(step)

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """flask-smorest's registration, with the blueprint's documentation as a step."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)

        def step() -> None:
            blp.register_views_in_doc(self, self._app, self.spec, name=name,
                                      parameters=parameters)
            self.spec.tag({"name": name, "description": blp.description})

        self.document(step)


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def create_app(config: Config | None = None, *, store: Store | None = None) -> Flask:
    """Build the gateway app.

    ``config`` defaults to :func:`clinvk.core.config.load_config` (``CLINVK_CONFIG`` or
    ``<clinvk home>/config.yaml``); ``store`` to the SQLite store under the clinvk home.
    """
    if config is None:
        config = load_config()
    if store is None:
        store = configured_store(config, clinvk_home())
    engine = Engine(config, store, server_mode=True)

    app = Flask("clinvk.server", static_folder=None)
    srv = config.server
    app.config.update(
        API_TITLE="clinvk API",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION,
                     "license": {"name": "MIT"}},
        },
        MAX_CONTENT_LENGTH=srv.max_request_body_bytes or None,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    jobs = _job_service(engine, store)
    app.extensions[EXTENSION_KEY] = Gateway(config=config, store=store, engine=engine,
                                            jobs=jobs)

    api = GatewayApi(app)
    app.extensions["clinvk.api"] = api
    error_handling.init_app(app)  # replaces flask-smorest's own error handler

    _install_request_hooks(app, config)
    for path in API_BLUEPRINTS:
        api.register_blueprint(_load(path))
    for path in PLAIN_BLUEPRINTS:
        app.register_blueprint(_load(path))
    for path in EXTENSIONS:
        _load(path)(app)
    return app


def _job_service(engine: Engine, store: Store) -> JobService | None:
    """Jobs live in the session database (their own tables); recover what a previous
    server left behind before taking requests. An unusable database leaves the app up
    (health reports the store) with the job routes answering 500."""
    srv = engine.config.server
    try:
        job_store = store.jobs
    except StoreError as exc:
        log.error("jobs are unavailable: %s", exc)
        return None
    limits = JobLimits(max_queued=srv.jobs_max_queued, max_events=srv.jobs_max_events,
                       retention_secs=srv.jobs_retention_secs,
                       retention_count=srv.jobs_retention_count, threads=srv.jobs_threads,
                       claim_secs=srv.jobs_claim_timeout_secs)
    try:
        records = store.responses
    except StoreError as exc:
        log.error("stored responses are unavailable: %s", exc)
        records = None
    service = JobService(engine, job_store, limits, records=records)
    service.recover()
    return service


def _install_request_hooks(app: Flask, config: Config) -> None:
    srv = config.server
    read_timeout = srv.read_timeout_secs or None
    write_timeout = srv.write_timeout_secs or None

    @app.before_request
    def _begin() -> None:
        error_handling.request_id()
        # Under gunicorn, bound how long one read of the request body may stall.
        sock = request.environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket) and read_timeout:
            sock.settimeout(read_timeout)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = error_handling.request_id()
        # ...and how long one write of the response may stall on a slow client.
        sock = request.environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket):
            sock.settimeout(write_timeout)
        return response
