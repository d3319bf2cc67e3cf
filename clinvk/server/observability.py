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

Several gunicorn workers: prometheus_client's multiprocess mode, set up by the master
(:mod:`clinvk.server.runtime.multiprocess`). Log lines get the current request's id from
:func:`request_id_of_current_request` (the formats live in :mod:`clinvk.server.runtime.logs`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, Request, g, has_request_context, request

from clinvk.core.config import Config
from clinvk.core.engine import EngineHooks
from clinvk.core.usage import UsageRow
from clinvk.server.runtime import logs
from clinvk.server.runtime.multiprocess import MULTIPROC_ENV

log = logging.getLogger("clinvk.server.observability")

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
    logs.use_request_ids(request_id_of_current_request)
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
    if rule is not None:  # added when the document is first built
        api.document(lambda: api.spec.path(rule=rule, operations={"get": operation}))


# --------------------------------------------------------------------------- request ids


def request_id_of_current_request() -> str:
    if has_request_context():
        from clinvk.server.errors import request_id

        try:
            return request_id()
        except Exception:  # noqa: BLE001 - logging must never fail a request
            return g.get("request_id") or "-"
    return "-"
