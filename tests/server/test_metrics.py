"""Prometheus ``/metrics`` against a real ``clinvk serve`` (docs/deployment.md).

Request counts by route template (bounded labels), backend runs by backend/outcome, the
run-duration histogram, in-flight runs, queue wait and sessions created. ``clinvk serve``
always uses prometheus_client's multiprocess mode; the two-worker case is in
``test_security_workers.py``.
"""

from __future__ import annotations

import secrets
import threading

import pytest
import requests
from support.fakes import fake
from support.metrics import sample_sum
from support.procs import wait_until


@pytest.fixture(scope="module")
def metered(server_factory, tmp_path_factory):
    work = tmp_path_factory.mktemp("metered")
    server = server_factory({"server": {"metrics_enabled": True}})
    server.work = work
    yield server
    server.stop(timeout=10)


def scrape(server) -> str:
    resp = requests.get(server.url("/metrics"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.text


def test_metrics_are_off_unless_enabled(server) -> None:
    assert requests.get(server.url("/metrics"), timeout=10).status_code == 404


def test_request_metrics_use_route_templates(metered) -> None:
    secret_ids = [secrets.token_hex(16) for _ in range(3)]
    for sid in secret_ids:
        assert requests.get(metered.url(f"/api/v1/sessions/{sid}"), timeout=10
                            ).status_code == 404
        assert requests.get(metered.url(f"/probe-{sid}"), timeout=10).status_code == 404
    assert requests.post(metered.url("/health"), timeout=10).status_code == 405
    text = scrape(metered)
    for sid in secret_ids:
        assert sid not in text  # raw paths never become label values
    count = "clinvk_http_request_duration_seconds_count"
    assert sample_sum(text, count, path="/api/v1/sessions/<string:session_id>",
                      method="GET", status="404") == 3
    assert sample_sum(text, count, path="<unmatched>", status="404") == 3
    assert sample_sum(text, count, path="<unmatched>", method="POST", status="405") == 1
    assert sample_sum(text, count, path="/health", status="200") >= 1  # readiness polls
    assert sample_sum(text, "clinvk_http_request_total", method="GET", status="404") >= 6
    assert "/metrics" not in {line.split('path="')[1].split('"')[0]
                              for line in text.splitlines() if 'path="' in line}


def test_backend_run_metrics(metered) -> None:
    before = scrape(metered)
    workdir = str(metered.work)

    def prompt(**body):
        return requests.post(metered.url("/api/v1/prompt"), json={"workdir": workdir, **body},
                             timeout=60)

    assert prompt(backend="claude", prompt="hello").status_code == 200
    assert prompt(backend="gemini", prompt=fake("boom", error=500),
                  ephemeral=True).status_code == 502
    assert prompt(backend="codex", prompt="plan only", dry_run=True).status_code == 200
    after = scrape(metered)

    def delta(name: str, **labels: str) -> float:
        return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)

    assert delta("clinvk_backend_runs_total", backend="claude", outcome="ok") == 1
    assert delta("clinvk_backend_runs_total", backend="gemini", outcome="failed") == 1
    assert delta("clinvk_backend_runs_total", backend="codex") == 0  # a dry run runs nothing
    assert delta("clinvk_backend_run_duration_seconds_count", backend="claude") == 1
    assert delta("clinvk_backend_run_duration_seconds_count", backend="gemini") == 1
    assert delta("clinvk_backend_run_duration_seconds_sum", backend="claude") > 0
    assert delta("clinvk_run_queue_wait_seconds_count") == 2
    # sessions: the claude run and the dry run created one; the ephemeral run did not
    assert delta("clinvk_sessions_created_total", backend="claude") == 1
    assert delta("clinvk_sessions_created_total", backend="codex") == 1
    assert delta("clinvk_sessions_created_total", backend="gemini") == 0
    assert sample_sum(after, "clinvk_backend_runs_in_flight") == 0
    for name in ("claude", "codex", "gemini"):  # every backend is exported from the start
        assert f'clinvk_backend_runs_in_flight{{backend="{name}"}}' in after


def test_in_flight_runs(metered) -> None:
    done: dict[str, int] = {}

    def slow() -> None:
        done["status"] = requests.post(metered.url("/api/v1/prompt"), timeout=60, json={
            "backend": "codex", "prompt": fake("slow", delay=2), "ephemeral": True,
            "workdir": str(metered.work)}).status_code

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert wait_until(lambda: sample_sum(scrape(metered), "clinvk_backend_runs_in_flight",
                                             backend="codex") == 1, 15)
    finally:
        thread.join(60)
    assert done["status"] == 200
    assert sample_sum(scrape(metered), "clinvk_backend_runs_in_flight") == 0


def test_metrics_in_process_without_gunicorn(app_factory, monkeypatch) -> None:
    """Outside gunicorn (no multiprocess directory) the app keeps its own registry."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first = app_factory({"server.metrics_enabled": True}).test_client()
    second = app_factory({"server.metrics_enabled": True}).test_client()  # no clash
    assert first.get("/api/v1/sessions").status_code == 200
    text = first.get("/metrics").get_data(as_text=True)
    assert sample_sum(text, "clinvk_http_request_duration_seconds_count",
                      path="/api/v1/sessions") == 1
    assert "process_cpu_seconds_total" in text
    assert second.get("/metrics").status_code == 200
