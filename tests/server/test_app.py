"""The gateway app in-process (Flask test client): routing, validation, error taxonomy,
envelope modes, health, OpenAPI and docs. Runs use the fake CLIs; the end-to-end suite
(`test_server_e2e.py`) repeats the important paths through a real gunicorn."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from support.fakes import FAKE_BIN, fake
from support.stores import BrokenStore

from clinvk.core.events import utc_timestamp
from clinvk.core.store import Session

PROMPT = "/api/v1/prompt"


def post(client, path: str, body=None, **kwargs):
    return client.post(path, json=body, **kwargs) if body is not None else client.post(
        path, **kwargs)


def assert_error(resp, status: int, code: str, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    if field is not None:
        assert body["details"]["field"] == field
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


# --------------------------------------------------------------------------- prompt


def test_prompt_runs_the_fake_cli_and_records_an_api_session(client) -> None:
    resp = post(client, PROMPT, {"backend": "claude", "prompt": "hello"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["success"] is True
    data = body["data"]
    assert data["status"] == "ok" and data["exit_code"] == 0
    assert data["output"].startswith("Hello from stub")
    assert data["backend_session_id"]
    assert data["token_usage"]["input_tokens"] > 0
    session = client.get(f"/api/v1/sessions/{data['session_id']}").get_json()["data"]
    assert session["tags"] == ["api"]
    assert session["status"] == "completed" and session["turn_count"] == 1


def test_continuing_a_session_resumes_it(client) -> None:
    first = post(client, PROMPT, {"backend": "codex", "prompt": "hi"}).get_json()["data"]
    second = post(client, PROMPT, {"session_id": first["session_id"][:8],
                                   "prompt": "again"})
    assert second.status_code == 200, second.get_data(as_text=True)
    data = second.get_json()["data"]
    assert data["session_id"] == first["session_id"]
    assert data["backend"] == "codex"
    assert data["backend_session_id"] == first["backend_session_id"]
    session = client.get(f"/api/v1/sessions/{first['session_id']}").get_json()["data"]
    assert session["turn_count"] == 2


def test_ephemeral_prompt_keeps_no_session(client) -> None:
    data = post(client, PROMPT, {"backend": "gemini", "prompt": "hi", "ephemeral": True}
                ).get_json()["data"]
    assert data["session_id"] is None
    assert client.get("/api/v1/sessions").get_json()["data"]["total"] == 0


def test_dry_run_returns_the_exact_argv_and_a_usable_session(client) -> None:
    resp = post(client, PROMPT, {"backend": "claude", "prompt": "--help me", "dry_run": True,
                                 "model": "fast"})
    data = resp.get_json()["data"]
    assert resp.status_code == 200
    assert data["dry_run"] is True and data["exit_code"] == 0
    argv = data["command"]
    assert argv[0] == "claude" and "--help me" not in argv  # the prompt travels on stdin
    shown = shlex.join([str(FAKE_BIN / "claude"), *argv[1:]])  # the binary's resolved path
    assert data["output"] == f"Would execute: {shown} <<< {shlex.quote('--help me')}"
    assert "haiku" in argv
    sid = data["session_id"]
    listed = client.get("/api/v1/sessions").get_json()["data"]
    assert [s["id"] for s in listed["sessions"]] == [sid]
    assert listed["sessions"][0]["status"] == "completed"
    assert client.get(f"/api/v1/sessions/{sid[:6]}").get_json()["data"]["id"] == sid
    deleted = client.delete(f"/api/v1/sessions/{sid}")
    assert deleted.get_json() == {"success": True, "data": {"deleted": True, "id": sid}}
    assert_error(client.get(f"/api/v1/sessions/{sid}"), 404, "not_found")


def test_ephemeral_dry_run_creates_nothing(client) -> None:
    data = post(client, PROMPT, {"backend": "codex", "prompt": "x", "dry_run": True,
                                 "ephemeral": True}).get_json()["data"]
    assert data["session_id"] is None and data["output"].startswith(
        f"Would execute: {FAKE_BIN / 'codex'}")
    assert client.get("/api/v1/sessions").get_json()["data"]["sessions"] == []


def test_stream_json_is_ndjson_with_one_terminal_event(client) -> None:
    resp = post(client, PROMPT, {"backend": "claude", "prompt": "hello",
                                 "output_format": "stream-json"})
    assert resp.status_code == 200
    assert resp.mimetype == "application/x-ndjson"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    import json

    events = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert events[0]["type"] == "init"
    assert [e["type"] for e in events].count("done") == 1 and events[-1]["type"] == "done"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    text = "".join(e["content"]["text"] for e in events if e["type"] == "message")
    assert text == events[-1]["content"]["output"]
    assert all(e["session_id"] == events[0]["session_id"] for e in events)


def test_failed_run_is_502_with_the_result(client) -> None:
    resp = post(client, PROMPT, {"backend": "claude", "prompt": fake("x", error=500)})
    body = assert_error(resp, 502, "backend_failed")
    assert resp.headers["x-should-retry"] == "false"
    assert body["data"]["status"] == "failed" and body["data"]["session_id"]


def test_timed_out_run_is_504_with_the_partial_result(client) -> None:
    started = time.monotonic()
    resp = post(client, PROMPT, {"backend": "codex", "prompt": fake("x", hang=True),
                                 "timeout_secs": 0.5})
    body = assert_error(resp, 504, "backend_timeout")
    assert time.monotonic() - started < 5
    assert resp.headers["x-should-retry"] == "false"
    assert body["data"]["status"] == "timeout"


def test_timeout_above_the_server_maximum_is_400(app_factory) -> None:
    client = app_factory({"server.request_timeout_secs": 10}).test_client()
    assert_error(post(client, PROMPT, {"backend": "claude", "prompt": "x", "timeout_secs": 11}),
                 400, "invalid_request", "timeout_secs")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "x"}, "backend"),
    ({"backend": "claude"}, "prompt"),
    ({"backend": "claude", "prompt": "   "}, "prompt"),
    ({"backend": "", "prompt": "x"}, "backend"),
    ({"backend": "claude", "prompt": "x", "promt": "y"}, "promt"),
    ({"backend": "claude", "prompt": 5}, "prompt"),
    ({"backend": "claude", "prompt": "x", "verbose": "yes"}, "verbose"),
    ({"backend": "claude", "prompt": "x", "max_turns": 1.5}, "max_turns"),
    ({"backend": "claude", "prompt": "x", "max_turns": True}, "max_turns"),
    ({"backend": "claude", "prompt": "x", "max_turns": -1}, "max_turns"),
    ({"backend": "claude", "prompt": "x", "timeout_secs": "5"}, "timeout_secs"),
    ({"backend": "claude", "prompt": "x", "approval_mode": "sometimes"}, "approval_mode"),
    ({"backend": "claude", "prompt": "x", "output_format": "xml"}, "output_format"),
    ({"backend": "claude", "prompt": "x", "extra": "--verbose"}, "extra"),
    ({"backend": "claude", "prompt": "x", "metadata": [1]}, "metadata"),
    ([1, 2], "body"),
])
def test_schema_violations_are_400_naming_the_field(client, body, field) -> None:
    assert_error(post(client, PROMPT, body), 400, "invalid_request", field)


def test_nested_fields_are_named_with_their_index(client) -> None:
    body = assert_error(post(client, "/api/v1/parallel", {"tasks": [
        {"backend": "claude", "prompt": "a"}, {"backend": "codex"}]}),
        400, "invalid_request", "tasks[1].prompt")
    assert "tasks[1].prompt" in body["error"]


def test_dollar_schema_and_nulls_are_tolerated(client) -> None:
    resp = post(client, PROMPT, {"$schema": "x", "backend": "claude", "prompt": "x",
                                 "model": None, "dry_run": True, "ephemeral": True})
    assert resp.status_code == 200


def test_unknown_backend_lists_the_known_ones(client) -> None:
    body = assert_error(post(client, PROMPT, {"backend": "gpt", "prompt": "x"}),
                        400, "unknown_backend", "backend")
    assert "claude, codex, gemini" in body["error"]


def test_malformed_json_wrong_type_and_empty_body(client) -> None:
    assert_error(client.post(PROMPT, data="{\"backend\": ", content_type="application/json"),
                 400, "invalid_json", "body")
    assert_error(client.post(PROMPT, data="backend=claude",
                             content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    assert_error(client.post(PROMPT, data="hi", content_type="text/plain"),
                 415, "unsupported_media_type")
    assert_error(client.post(PROMPT, data="", content_type="application/json"),
                 400, "invalid_request", "body")
    # No Content-Type at all is read as JSON (as the Go server did).
    resp = client.post(PROMPT, data='{"backend":"claude","prompt":"x","dry_run":true}')
    assert resp.status_code == 200


def test_body_over_the_limit_is_413(app_factory) -> None:
    client = app_factory({"server.max_request_body_bytes": 2048}).test_client()
    assert_error(post(client, PROMPT, {"backend": "claude", "prompt": "x" * 4096}),
                 413, "request_too_large")


def test_unknown_route_and_wrong_method(client) -> None:
    assert_error(client.get("/api/v1/nope"), 404, "not_found")
    assert_error(client.get("/nope"), 404, "not_found")
    resp = client.get(PROMPT)
    assert_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


# --------------------------------------------------------------------------- policy and load


@pytest.mark.parametrize(("extra", "field"), [
    ({"workdir": "/etc"}, "workdir"),
    ({"approval_mode": "none"}, "approval_mode"),
    ({"sandbox_mode": "full"}, "sandbox_mode"),
    ({"extra": ["--dangerously-skip-permissions"]}, "extra"),
])
def test_policy_refusals_are_403(client, extra, field) -> None:
    assert_error(post(client, PROMPT, {"backend": "claude", "prompt": "x", **extra}),
                 403, "forbidden", field)


def test_relative_workdir_is_400(client) -> None:
    assert_error(post(client, PROMPT, {"backend": "claude", "prompt": "x", "workdir": "rel"}),
                 400, "invalid_request", "workdir")


def test_busy_session_is_409(app, client) -> None:
    sid = post(client, PROMPT, {"backend": "claude", "prompt": "x"}).get_json()["data"][
        "session_id"]
    with app.extensions["clinvk"].store.busy(sid):
        assert_error(post(client, PROMPT, {"session_id": sid, "prompt": "y"}),
                     409, "session_busy")
        assert_error(client.delete(f"/api/v1/sessions/{sid}"), 409, "session_busy")


def test_saturated_server_is_503_with_retry_after(app_factory) -> None:
    app = app_factory({"server.max_concurrent_runs": 1, "server.queue_timeout_secs": 0})
    engine = app.extensions["clinvk"].engine
    engine.slots.acquire()
    try:
        resp = post(app.test_client(), PROMPT, {"backend": "claude", "prompt": "x"})
        assert_error(resp, 503, "server_saturated")
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        engine.slots.release()


def test_backend_not_installed_is_503_with_retry_after(app_factory, monkeypatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    client = app_factory().test_client()
    resp = post(client, PROMPT, {"backend": "gemini", "prompt": "x"})
    assert_error(resp, 503, "backend_unavailable")
    assert int(resp.headers["Retry-After"]) > 0


def test_store_failure_is_500_without_internals(app_factory) -> None:
    client = app_factory(store=BrokenStore()).test_client()
    resp = client.get("/api/v1/sessions")
    assert_error(resp, 500, "store_error")
    assert "/secret/path" not in resp.get_data(as_text=True)


def test_unexpected_exception_is_500_without_traceback(app, client, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["clinvk"].engine.registry, "names", boom)
    monkeypatch.setattr(type(app.extensions["clinvk"].engine.registry), "__iter__", boom)
    resp = client.get("/api/v1/backends")
    assert_error(resp, 500, "internal_error")
    assert "secret internals" not in resp.get_data(as_text=True)


# --------------------------------------------------------------------------- envelope off


def test_bare_mode_returns_go_shaped_bodies_with_the_same_statuses(app_factory) -> None:
    client = app_factory({"server.response_envelope": False}).test_client()
    resp = post(client, PROMPT, {"backend": "claude", "prompt": "hi"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert "success" not in body and body["exit_code"] == 0 and body["session_id"]
    resp = post(client, PROMPT, {"prompt": "hi"})
    assert resp.status_code == 400
    err = resp.get_json()
    assert err["error"] == "invalid_request" and "backend" in err["message"]
    resp = post(client, PROMPT, {"backend": "claude", "prompt": fake("x", error=500)})
    assert resp.status_code == 502
    assert resp.get_json()["error"] == "backend_failed"
    assert client.get("/api/v1/nope").get_json()["error"] == "not_found"
    listed = client.get("/api/v1/sessions").get_json()
    assert listed["total"] == 2 and "success" not in listed


# --------------------------------------------------------------------------- sessions


def test_sessions_filters_pagination_and_prefixes(app, client) -> None:
    store = app.extensions["clinvk"].store
    base = 1_800_000_000.0
    sessions = [
        Session(id=f"abcd{i:028x}", backend="claude" if i % 2 else "codex",
                backend_session_id=None, created_at=utc_timestamp(base + i),
                last_used=utc_timestamp(base + i), working_dir="/tmp", initial_prompt="p",
                title="p", status="completed" if i < 3 else "error",
                tags=["api"] if i == 4 else [])
        for i in range(5)
    ]
    store._insert_many(sessions)
    page = client.get("/api/v1/sessions?limit=2&offset=1").get_json()["data"]
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [s["id"] for s in page["sessions"]] == [sessions[3].id, sessions[2].id]
    only = client.get("/api/v1/sessions?backend=claude&status=completed").get_json()["data"]
    assert [s["id"] for s in only["sessions"]] == [sessions[1].id]
    tagged = client.get("/api/v1/sessions?tag=api").get_json()["data"]
    assert [s["id"] for s in tagged["sessions"]] == [sessions[4].id]
    first = client.get("/api/v1/sessions?limit=2").get_json()["data"]
    second = client.get(f"/api/v1/sessions?limit=2&cursor={first['next_cursor']}").get_json()
    assert [s["id"] for s in second["data"]["sessions"]] == [sessions[2].id, sessions[1].id]
    assert second["data"]["total"] == 5 and second["data"]["next_cursor"]
    last = client.get("/api/v1/sessions?limit=2&cursor=" + second["data"]["next_cursor"])
    assert [s["id"] for s in last.get_json()["data"]["sessions"]] == [sessions[0].id]
    assert last.get_json()["data"]["next_cursor"] is None
    assert_error(client.get("/api/v1/sessions?cursor=zzz"), 400, "invalid_request", "cursor")
    assert_error(client.get("/api/v1/sessions/abcd"), 400, "ambiguous_session_prefix")
    assert_error(client.get("/api/v1/sessions?status=weird"), 400, "invalid_request", "status")
    assert_error(client.get("/api/v1/sessions?limit=5000"), 400, "invalid_request", "limit")
    assert_error(client.get("/api/v1/sessions?limit=x"), 400, "invalid_request", "limit")
    assert_error(client.get("/api/v1/sessions/not-hex!"), 400, "invalid_request")
    assert_error(client.delete("/api/v1/sessions/ffffffff"), 404, "not_found")


# --------------------------------------------------------------------------- orchestration


def test_parallel_results_in_input_order(client) -> None:
    resp = post(client, "/api/v1/parallel", {"tasks": [
        {"backend": "claude", "prompt": fake("a", reply="one", delay=0.3)},
        {"backend": "codex", "prompt": fake("b", reply="two")},
        {"backend": "gemini", "prompt": fake("c", error=500)},
    ], "max_parallel": 3})
    assert resp.status_code == 200
    data = resp.get_json()["data"]
    assert data["total_tasks"] == 3 and data["completed"] == 2 and data["failed"] == 1
    assert [r["status"] for r in data["results"]] == ["ok", "ok", "failed"]
    assert [r["output"] for r in data["results"][:2]] == ["one", "two"]
    assert all("session_id" not in r for r in data["results"])
    assert client.get("/api/v1/sessions").get_json()["data"]["total"] == 0


def test_parallel_limits_are_400(app_factory) -> None:
    client = app_factory({"server.max_parallel_tasks": 2,
                          "parallel.max_parallel_limit": 4}).test_client()
    task = {"backend": "claude", "prompt": "x", "dry_run": True}
    assert_error(post(client, "/api/v1/parallel", {"tasks": [task] * 3}),
                 400, "invalid_request", "tasks")
    assert_error(post(client, "/api/v1/parallel", {"tasks": [task], "max_parallel": 5}),
                 400, "invalid_request", "max_parallel")
    assert_error(post(client, "/api/v1/parallel", {"tasks": []}), 400, "invalid_request",
                 "tasks")
    assert_error(post(client, "/api/v1/parallel", {}), 400, "invalid_request", "tasks")


def test_chain_passes_previous_output_and_stops_on_failure(client, tmp_path: Path) -> None:
    resp = post(client, "/api/v1/chain", {"steps": [
        {"backend": "claude", "prompt": fake("first", reply="ALPHA"), "name": "one",
         "workdir": str(tmp_path)},
        {"backend": "codex", "prompt": "got {{previous}} FAKE{\"reply\": \"{{previous}}!\"}"},
        {"backend": "gemini", "prompt": fake("x", error=500)},
        {"backend": "claude", "prompt": "never"},
    ], "stop_on_failure": True, "pass_working_dir": True})
    assert resp.status_code == 200
    data = resp.get_json()["data"]
    results = data["results"]
    assert [r["step"] for r in results] == [1, 2, 3, 4]
    assert results[0]["name"] == "one"
    assert results[1]["output"] == "ALPHA!"
    assert results[1]["working_dir"] == str(tmp_path.resolve())
    assert [r["status"] for r in results] == ["ok", "ok", "failed", "skipped"]
    assert data["completed_steps"] == 2 and data["failed_step"] == 3
    assert data["total_steps"] == 4


def test_chain_rejects_session_features(client) -> None:
    step = {"backend": "claude", "prompt": "x"}
    assert_error(post(client, "/api/v1/chain", {"steps": [step], "pass_session_id": True}),
                 400, "invalid_request", "pass_session_id")
    assert_error(post(client, "/api/v1/chain", {"steps": [
        step, {"backend": "claude", "prompt": "use {{session}}"}]}),
        400, "invalid_request", "steps[1].prompt")
    assert_error(post(client, "/api/v1/chain", {"steps": [{"backend": "x", "prompt": "y"}]}),
                 400, "unknown_backend", "steps[0].backend")


def test_compare_reports_the_model_each_backend_used(client) -> None:
    resp = post(client, "/api/v1/compare", {"backends": ["claude", "codex", "gemini"],
                                            "prompt": "hi", "model": "fast",
                                            "sequential": True})
    assert resp.status_code == 200
    data = resp.get_json()["data"]
    assert data["backends"] == ["claude", "codex", "gemini"]
    assert [r["backend"] for r in data["results"]] == data["backends"]
    assert all(r["status"] == "ok" and r["model"] for r in data["results"])
    assert data["completed"] == 3 and data["failed"] == 0
    assert_error(post(client, "/api/v1/compare", {"backends": ["claude", "nope"],
                                                  "prompt": "x"}),
                 400, "unknown_backend", "backends[1]")
    assert_error(post(client, "/api/v1/compare", {"backends": [], "prompt": "x"}),
                 400, "invalid_request", "backends")


# --------------------------------------------------------------------------- backends, meta


def test_backends_in_stable_order_with_details(client) -> None:
    backends = client.get("/api/v1/backends").get_json()["data"]["backends"]
    assert [b["name"] for b in backends] == ["claude", "codex", "gemini"]
    assert all(b["available"] and b["path"].endswith(b["name"]) and b["version"]
               for b in backends)


def test_health_ok_degraded_and_unhealthy(app_factory, monkeypatch, tmp_path: Path) -> None:
    body = app_factory().test_client().get("/health").get_json()
    assert body["status"] == "ok" and body["version"]
    assert body["session_store"] == {"available": True, "session_count": 0}
    assert isinstance(body["uptime_millis"], int) and body["uptime"].endswith("s")
    monkeypatch.setenv("PATH", str(tmp_path))
    resp = app_factory().test_client().get("/health")
    assert resp.status_code == 200 and resp.get_json()["status"] == "degraded"
    resp = app_factory(store=BrokenStore()).test_client().get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unhealthy" and body["session_store"]["available"] is False


def test_request_id_is_echoed_when_sane(client) -> None:
    resp = client.get("/health", headers={"X-Request-ID": "abc-123:x.y_z"})
    assert resp.headers["X-Request-ID"] == "abc-123:x.y_z"
    for bad in ("bad id", "x" * 129, "<script>"):
        resp = client.get("/api/v1/nope", headers={"X-Request-ID": bad})
        assert resp.headers["X-Request-ID"] != bad and len(resp.headers["X-Request-ID"]) == 32
    assert client.get("/health").headers["X-Request-ID"]


def test_openapi_document_is_valid_and_complete(client) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").get_json()
    validate(doc)
    paths = doc["paths"]
    for path, method in [("/api/v1/prompt", "post"), ("/api/v1/parallel", "post"),
                         ("/api/v1/chain", "post"), ("/api/v1/compare", "post"),
                         ("/api/v1/backends", "get"), ("/api/v1/sessions", "get"),
                         ("/api/v1/sessions/{session_id}", "get"),
                         ("/api/v1/sessions/{session_id}", "delete"), ("/health", "get")]:
        assert method in paths[path], (path, method)
    prompt_200 = paths["/api/v1/prompt"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(prompt_200)


def test_docs_are_served_offline(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http" not in html.replace("http-equiv", "")  # no CDN
    for asset in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css",
                  "clinvk-docs.js"):
        assert asset in html
        resp = client.get(f"/docs/static/{asset}")
        assert resp.status_code == 200 and len(resp.get_data()) > 100


@pytest.mark.parametrize("prompt, dry_run", [("hello", False), (fake("x", error=500), False),
                                             ("hello", True)])
def test_prompt_result_body_is_what_its_schema_dumps(client, prompt, dry_run) -> None:
    """The prompt result is built without a marshmallow dump (it is on every prompt's
    critical path); it must stay exactly what the documented schema would produce."""
    from clinvk.server.native.schemas import PromptResultSchema

    resp = post(client, PROMPT, {"backend": "claude", "prompt": prompt, "dry_run": dry_run})
    data = resp.get_json()["data"]
    assert data["session_id"] and data["token_usage"]
    assert PromptResultSchema().dump(data) == data


def test_requests_build_no_schema(client, monkeypatch) -> None:
    """Request and response schemas are built once per route, not per request (building a
    marshmallow schema deep-copies its fields)."""
    import marshmallow

    body = {"backend": "claude", "prompt": "hi"}
    assert post(client, "/api/v1/prompt", body).status_code == 200  # lazily built ones
    assert client.get("/api/v1/sessions").status_code == 200
    built: list[type] = []
    original = marshmallow.Schema.__init__

    def counting(self, *args, **kwargs) -> None:
        built.append(type(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(marshmallow.Schema, "__init__", counting)
    for _ in range(3):
        assert post(client, "/api/v1/prompt", body).status_code == 200
        assert client.get("/api/v1/sessions").status_code == 200
        assert post(client, "/api/v1/prompt", {"backend": "nope", "prompt": "x"}
                    ).status_code == 400  # validation runs on the shared instance
    assert built == []


def test_error_statuses_cost_one_layer_at_request_time(app) -> None:
    """flask-smorest runs each decorator's wrapper on every request; a route's documented
    error statuses are one ``Blueprint.doc`` (clinvk/server/apidoc.py), not one each."""
    for endpoint in ("openai.ChatCompletions", "anthropic.Messages", "native.Prompt"):
        view, depth = app.view_functions[endpoint].view_class.post, 0
        while hasattr(view, "__wrapped__"):
            view, depth = view.__wrapped__, depth + 1
        assert depth <= 6, endpoint  # arguments, response, stream variant, doc, errors, …
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    openai = paths["/openai/v1/chat/completions"]["post"]["responses"]
    assert {"400", "401", "429", "502", "503", "default"} <= set(openai)
    assert openai["429"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "OpenAIError")
    native = paths["/api/v1/prompt"]["post"]["responses"]
    assert native["502"]["content"]["application/json"]["schema"]["$ref"].endswith("ApiError")


def test_the_openapi_document_is_built_on_first_read_once(app) -> None:
    """No spec is built at start-up; concurrent first readers all get the whole document,
    and later reads the same one."""
    import threading

    api = app.extensions["clinvk.api"]
    assert api._doc_steps, "something built the OpenAPI document at start-up"
    bodies: list[bytes] = []

    def read() -> None:
        resp = app.test_client().get("/openapi.json")
        assert resp.status_code == 200
        bodies.append(resp.get_data())

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read()
    assert len(set(bodies)) == 1 and len(bodies) == 5
    document = app.test_client().get("/openapi.json").get_json()
    assert "/api/v1/prompt" in document["paths"] and "ApiKeyHeader" in str(document)
    assert api._doc_steps == []
