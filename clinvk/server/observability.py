"""Observability: Prometheus metrics, engine run metrics and log lines with request ids.

Metrics (``server.metrics_enabled``) come from prometheus-flask-exporter plus the engine's
:class:`~clinvk.core.engine.EngineHooks`, exposed at ``/metrics``:

* ``clinvk_http_request_duration_seconds{method,path,status}`` (histogram; its ``_count``
  is the request count) and ``clinvk_http_request_total{method,status}``. ``path`` is the
  route template (``/api/v1/sessions/<string:session_id>``), ``<unmatched>`` for unknown
  paths, so label values stay bounded whatever clients send. Refused requests (401, 413,
  429) are counted too. For streamed responses the duration ends at the first byte.
* ``clinvk_backend_runs_total{backend,outcome}`` with outcome ``ok``, ``failed``,
  ``timeout``, ``cancelled`` or ``unavailable``; ``clinvk_backend_run_duration_seconds``
  (histogram by backend); ``clinvk_backend_runs_in_flight{backend}`` (gauge);
  ``clinvk_run_queue_wait_seconds`` (time a run waited for a ``max_concurrent_runs``
  slot); ``clinvk_sessions_created_total{backend}``.
* ``execution.mode: celery`` only: ``clinvk_queue_depth{queue}`` (runs waiting in each
  Celery queue) and ``clinvk_agent_hosts`` (live agent hosts), read from Redis when
  ``/metrics`` is scraped.

Several gunicorn workers: prometheus_client's multiprocess mode. The gunicorn hooks of
:func:`gunicorn_settings` give the master a fresh ``PROMETHEUS_MULTIPROC_DIR`` before
the first worker forks (a private temporary directory, or the operator's own, emptied),
mark exited workers dead and remove the temporary directory on exit; ``/metrics`` on any
worker then aggregates every worker. prometheus_client reads that variable when it is
first imported, so nothing here imports it before the hooks ran.

Logs: :func:`log_handler` gives clinvk's loggers a handler whose lines carry the request
id (``rid=...`` in text, ``request_id`` in JSON, ``server.log_format``);
:class:`JsonGunicornLogger` makes gunicorn's access and error logs JSON too.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from flask import Flask, Request, g, has_request_context, request
from gunicorn.glogging import Logger as GunicornLogger

from clinvk.core.config import Config
from clinvk.core.engine import EngineHooks
from clinvk.core.usage import UsageRow

log = logging.getLogger("clinvk.server.observability")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
PREFIX = "clinvk"
UNMATCHED = "<unmatched>"
OTHER = "other"  # label value for a backend or model the configuration does not name

#: Request latency buckets (seconds): API calls are fast, agent runs take minutes.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0, 300.0, 600.0)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
               1200.0, 1800.0, 3600.0)
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# --------------------------------------------------------------------------- engine metrics


class MetricsHooks(EngineHooks):
    """Engine observation points as Prometheus metrics (multiprocess-safe)."""

    def __init__(self, registry: Any, backends: list[str],
                 models: frozenset[str] = frozenset()) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.runs = Counter(
            f"{PREFIX}_backend_runs", "Backend CLI runs by backend and outcome "
            "(ok, failed, timeout, cancelled, unavailable).", ["backend", "outcome"],
            registry=registry)
        self.duration = Histogram(
            f"{PREFIX}_backend_run_duration_seconds", "Wall time of backend CLI runs.",
            ["backend"], buckets=RUN_BUCKETS, registry=registry)
        self.in_flight = Gauge(
            f"{PREFIX}_backend_runs_in_flight", "Backend CLI runs in progress.", ["backend"],
            multiprocess_mode="livesum", registry=registry)
        self.queue_wait_seconds = Histogram(
            f"{PREFIX}_run_queue_wait_seconds", "Time a run waited for a free slot "
            "(server.max_concurrent_runs).", buckets=QUEUE_BUCKETS, registry=registry)
        self.sessions = Counter(
            f"{PREFIX}_sessions_created", "Sessions created by the server.", ["backend"],
            registry=registry)
        self.backends, self.models = frozenset(backends), models
        self.tokens = Counter(
            f"{PREFIX}_tokens", "Tokens the CLIs reported, by backend, model and kind (input "
            "includes cached; model: configured models and aliases, the rest 'other').",
            ["backend", "model", "kind"], registry=registry)
        self.cost = Counter(
            f"{PREFIX}_cost_usd", "Cost the CLIs reported (claude), by backend and model.",
            ["backend", "model"], registry=registry)
        self.budget_rejections = Counter(
            f"{PREFIX}_budget_rejections", "Runs refused because a key's budget was spent.",
            ["key_id", "budget"], registry=registry)
        for name in backends:  # export zeros, so dashboards see every backend from the start
            self.in_flight.labels(name).set(0)
            self.runs.labels(name, "ok")
            self.sessions.labels(name)

    def run_started(self, backend: str) -> None:
        self.in_flight.labels(backend).inc()

    def run_finished(self, backend: str, status: str, seconds: float) -> None:
        self.in_flight.labels(backend).dec()
        self.runs.labels(backend, status).inc()
        self.duration.labels(backend).observe(max(seconds, 0.0))

    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_seconds.observe(max(seconds, 0.0))

    def session_created(self, backend: str) -> None:
        self.sessions.labels(backend).inc()

    def usage_recorded(self, row: UsageRow) -> None:
        backend = row.backend if row.backend in self.backends else OTHER
        model = row.model if row.model in self.models else OTHER
        for kind, amount in (("input", row.input_tokens), ("output", row.output_tokens),
                             ("cached", row.cached_tokens)):
            if amount > 0:
                self.tokens.labels(backend, model, kind).inc(amount)
        if row.cost_usd:
            self.cost.labels(backend, model).inc(row.cost_usd)

    def budget_rejected(self, key_id: str, budget: str) -> None:
        self.budget_rejections.labels(key_id or "none", budget).inc()


def known_models(config: Config) -> frozenset[str]:
    """The ``model`` label values: configured default models, aliases and their targets."""
    names: set[str] = set()
    for backend in config.backends.values():
        if backend.model:
            names.add(backend.model)
        names.update(backend.aliases)
        names.update(backend.aliases.values())
    return frozenset(names)


def path(req: Request) -> str:
    """The ``path`` label: the matched route template, never the raw path."""
    return req.url_rule.rule if req.url_rule is not None else UNMATCHED


def init_app(app: Flask) -> None:
    """Install metrics (an ``EXTENSIONS`` hook of :mod:`clinvk.server.app`).

    Runs before the security layer so that requests it refuses are timed and counted.
    """
    gateway = app.extensions["clinvk"]
    config: Config = gateway.config
    if not config.server.metrics_enabled:
        return
    multiprocess = bool(os.environ.get(MULTIPROC_ENV))
    from prometheus_client import CollectorRegistry, values

    if multiprocess and values.ValueClass.__name__ == "MutexValue":
        # prometheus_client was imported before the directory was set (an embedding
        # that did not use our gunicorn hooks): switch to file-backed values now.
        values.ValueClass = values.get_value_class()
    registry = CollectorRegistry(auto_describe=True)
    if not multiprocess:
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    from prometheus_flask_exporter import PrometheusMetrics

    metrics = PrometheusMetrics(
        app, path=METRICS_PATH, defaults_prefix=PREFIX, group_by=path,
        buckets=REQUEST_BUCKETS, registry=registry)
    app.extensions["clinvk.metrics"] = metrics
    gateway.engine.hooks = MetricsHooks(registry, [b.name for b in gateway.engine.registry],
                                        known_models(config))
    if gateway.engine.runner.status() is not None:
        _queue_metrics(app, gateway.engine.runner, registry)
    _document(app, config)


def _queue_metrics(app: Flask, runner: Any, registry: Any) -> None:
    """Queue depths come from Redis, so they are read when ``/metrics`` is asked for; the
    worker answering sets the gauges ("mostrecent" when several workers share files)."""
    from prometheus_client import Gauge

    depth = Gauge(f"{PREFIX}_queue_depth", "Runs waiting in each Celery queue.", ["queue"],
                  multiprocess_mode="mostrecent", registry=registry)
    hosts = Gauge(f"{PREFIX}_agent_hosts", "Live agent hosts (clinvk worker).",
                  multiprocess_mode="mostrecent", registry=registry)

    @app.before_request
    def refresh() -> None:
        if request.path != METRICS_PATH:
            return
        status = runner.status() or {}
        hosts.set(len(status.get("hosts", [])))
        for queue, waiting in status.get("queues", {}).items():
            depth.labels(queue=queue).set(waiting)


def _document(app: Flask, config: Config) -> None:
    api = app.extensions.get("clinvk.api")
    if api is None:
        return
    operation: dict[str, Any] = {
        "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["meta"],
        "description": "Prometheus text exposition of request, backend-run and session "
                       "metrics (server.metrics_enabled), aggregated over all workers.",
        "responses": {"200": {"description": "Prometheus text format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }
    if not config.server.metrics_require_auth:
        operation["security"] = []
    rule = next((r for r in app.url_map.iter_rules() if r.rule == METRICS_PATH), None)
    if rule is not None:
        api.spec.path(rule=rule, operations={"get": operation})


# --------------------------------------------------------------------------- gunicorn hooks

_metrics_dir: dict[str, Any] = {"path": None, "owned": False}


def prepare_multiprocess_dir() -> str:
    """Master, once: a usable ``PROMETHEUS_MULTIPROC_DIR`` before any worker forks."""
    if _metrics_dir["path"] is not None:
        return _metrics_dir["path"]
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # values of a previous run would be summed in
            stale.unlink(missing_ok=True)
        _metrics_dir.update(path=str(directory), owned=False)
    else:
        _metrics_dir.update(path=tempfile.mkdtemp(prefix="clinvk-metrics-"), owned=True)
        os.environ[MULTIPROC_ENV] = _metrics_dir["path"]
    return _metrics_dir["path"]


def _pre_fork(server: Any, worker: Any) -> None:
    prepare_multiprocess_dir()


def _child_exit(server: Any, worker: Any) -> None:
    if _metrics_dir["path"] is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _on_exit(server: Any) -> None:
    if _metrics_dir["owned"] and _metrics_dir["path"]:
        shutil.rmtree(_metrics_dir["path"], ignore_errors=True)
        _metrics_dir.update(path=None, owned=False)


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """gunicorn settings of this layer (merged by clinvk.server.runtime.serve.gunicorn_settings)."""
    settings: dict[str, Any] = {}
    if config.server.metrics_enabled:
        settings.update(pre_fork=_pre_fork, child_exit=_child_exit, on_exit=_on_exit)
    json_lines = config.server.log_format == "json"
    settings["logger_class"] = JsonGunicornLogger if json_lines else RedactingGunicornLogger
    return settings


# --------------------------------------------------------------------------- logging


def current_request_id() -> str:
    if has_request_context():
        from clinvk.server.errors import request_id

        try:
            return request_id()
        except Exception:  # noqa: BLE001 - logging must never fail a request
            return g.get("request_id") or "-"
    return "-"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the current request's id, ``-`` outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, request_id, message (+ fields)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s " \
              "rid=%(request_id)s"
TEXT_DATEFMT = "%Y-%m-%d %H:%M:%S %z"


def log_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, TEXT_DATEFMT)


def log_handler(config: Config, stream: Any = None) -> logging.Handler:
    """The handler for clinvk's loggers: ``server.log_format`` with the request id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(log_formatter(config.server.log_format))
    handler.addFilter(RequestIdFilter())
    return handler


# Query parameters whose values never reach a log line (compared case-insensitively).
SECRET_QUERY_PARAMS = frozenset({
    "api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token",
    "id_token", "auth", "authorization", "password", "passwd", "secret", "client_secret",
    "signature", "sig", "x-api-key",
})
REDACTED = "[redacted]"


def redact_query(query: str) -> str:
    """``query`` with the value of every secret parameter replaced by ``[redacted]``."""
    if not query:
        return query
    parts = []
    for item in query.split("&"):
        name, sep, _ = item.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_QUERY_PARAMS:
            item = f"{name}={REDACTED}"
        parts.append(item)
    return "&".join(parts)


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger, with secret query parameters redacted from access lines."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        query = environ.get("QUERY_STRING", "")
        if query:
            safe = redact_query(query)
            atoms["q"] = safe
            atoms["r"] = (f"{environ.get('REQUEST_METHOD')} {environ.get('RAW_URI', '')}"
                          .split("?", 1)[0] + f"?{safe} {environ.get('SERVER_PROTOCOL')}")
        return atoms


class JsonGunicornLogger(RedactingGunicornLogger):
    """gunicorn's logger with JSON lines (``server.log_format: json``).

    Access lines carry method, path (no query string), status, bytes, duration_ms,
    remote_addr and the request id the app answered with; never request headers.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        request_id = "-"
        for name, value in getattr(resp, "headers", None) or []:
            if name.lower() == "x-request-id":
                request_id = value
        status = getattr(resp, "status_code", None)
        if status is None:
            status = str(getattr(resp, "status", "") or "").partition(" ")[0] or None
        fields = {
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if str(status or "").isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info("request", extra={"fields": fields,
                                                   "request_id": request_id})
        except Exception:  # noqa: BLE001 - a log line must not break the response
            self.error("access log line failed")
