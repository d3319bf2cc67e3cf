"""``GET /health`` in front of Flask (clinvk.server.fastpath): the same answer as the Flask
route, taken only when no layer of the stack has work for the request."""

from __future__ import annotations

from typing import Any

import pytest
from support.stores import BrokenStore, UnreachableStore

HEADERS_OF_THE_ROUTE = {"Content-Type", "Content-Length", "Cache-Control", "X-Request-ID"}


def flask_calls(app: Any) -> list[str]:
    """Paths Flask dispatched, seen from a before_request hook of the test's own."""
    seen: list[str] = []

    @app.before_request
    def _note() -> None:
        from flask import request

        seen.append(request.path)

    return seen


def stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("uptime", "uptime_millis")}


def test_a_probe_skips_flask_and_gets_the_routes_answer(app_factory) -> None:
    app = app_factory()
    seen = flask_calls(app)
    client = app.test_client()
    fast = client.get("/health")
    assert seen == []
    # An Origin header sends the same request through Flask (CORS has work to do)
    slow = client.get("/health", headers={"Origin": "http://localhost:3000"})
    assert seen == ["/health"]
    assert (fast.status, fast.mimetype) == (slow.status, slow.mimetype) == ("200 OK",
                                                                          "application/json")
    assert stable(fast.get_json()) == stable(slow.get_json())
    assert fast.get_json()["status"] == "ok"
    assert set(fast.headers.keys()) == HEADERS_OF_THE_ROUTE
    assert HEADERS_OF_THE_ROUTE <= set(slow.headers.keys())
    assert fast.headers["Cache-Control"] == slow.headers["Cache-Control"] == "no-store"
    assert int(fast.headers["Content-Length"]) == len(fast.get_data())
    assert fast.get_data().endswith(b"}\n")


def test_request_ids_and_head(app_factory) -> None:
    client = app_factory().test_client()
    assert client.get("/health", headers={"X-Request-ID": "probe-7"}
                      ).headers["X-Request-ID"] == "probe-7"
    for bad in ("bad id", "x" * 129, "<script>"):
        rid = client.get("/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert rid != bad and len(rid) == 32
    first, second = (client.get("/health").headers["X-Request-ID"] for _ in range(2))
    assert first != second
    head = client.head("/health")
    assert head.status_code == 200 and head.get_data() == b""
    assert int(head.headers["Content-Length"]) == len(client.get("/health").get_data())


def test_unhealthy_store_is_503_on_the_short_path_too(app_factory) -> None:
    app = app_factory(store=BrokenStore())
    seen = flask_calls(app)
    resp = app.test_client().get("/health")
    assert seen == [] and resp.status == "503 SERVICE UNAVAILABLE"
    body = resp.get_json()
    assert body["status"] == "unhealthy" and body["session_store"]["available"] is False


def test_store_outage_is_degraded_on_the_short_path(app_factory) -> None:
    app = app_factory(store=UnreachableStore())
    seen = flask_calls(app)
    resp = app.test_client().get("/health")
    assert seen == [] and resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "degraded" and body["session_store"]["available"] is False
    assert "db.internal" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("request_kw", [
    {"method": "POST", "data": b"{}", "content_type": "application/json"},
    {"method": "OPTIONS", "headers": {"Origin": "http://localhost:3000",
                                      "Access-Control-Request-Method": "GET"}},
    {"method": "GET", "data": b"x" * 10, "content_type": "text/plain"},
    {"method": "GET", "query_string": "", "path": "/health/"},
])
def test_anything_but_a_plain_probe_goes_through_flask(app_factory, request_kw) -> None:
    app = app_factory()
    seen = flask_calls(app)
    kw = dict(request_kw)
    path = kw.pop("path", "/health")
    app.test_client().open(path, **kw)
    assert seen == [path]


@pytest.mark.parametrize("overrides", [
    {"server.rate_limit_enabled": True, "server.rate_limit_rps": 1, "server.rate_limit_burst": 2},
    {"server.metrics_enabled": True},
    {"server.trusted_proxies": ["127.0.0.1/32"]},
])
def test_configured_layers_keep_health_on_the_full_stack(app_factory, overrides) -> None:
    app = app_factory(overrides)
    seen = flask_calls(app)
    resp = app.test_client().get("/health")
    assert seen == ["/health"] and resp.status_code == 200


def test_rate_limit_still_counts_probes(app_factory) -> None:
    client = app_factory({"server.rate_limit_enabled": True,
                          "server.rate_limit_rps": 1, "server.rate_limit_burst": 2}).test_client()
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 429]
