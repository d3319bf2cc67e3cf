"""GET /api/v1/usage, budgets in the three dialects, the usage metrics and /dashboard,
through the real app (fake CLIs as backends)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support.fakes import fake

from clinvk.core.keys import key_id

KEY_A = "sk-usage-a-0123456789abcdef"
KEY_B = "sk-usage-b-0123456789abcdef"
ADMIN = "sk-usage-admin-0123456789ab"
NATIVE_KEY = "sk-budget-native-0123456789"
OPENAI_KEY = "sk-budget-openai-0123456789"
ANTHROPIC_KEY = "sk-budget-anthro-0123456789"
JOB_KEY = "sk-budget-jobs-0123456789ab"
KEYS = (KEY_A, KEY_B, ADMIN, NATIVE_KEY, OPENAI_KEY, ANTHROPIC_KEY, JOB_KEY)


def _h(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


@pytest.fixture
def client(app_factory, monkeypatch):
    monkeypatch.setenv("CLINVK_API_KEYS", ",".join(KEYS))
    budgets = {key_id(k): "runs 1 per 2 seconds"
               for k in (NATIVE_KEY, OPENAI_KEY, ANTHROPIC_KEY)}
    budgets[key_id(JOB_KEY)] = "runs 1 per 30 seconds"
    app = app_factory({"server.admin_key_ids": [key_id(ADMIN)], "server.budgets": budgets,
                       "server.metrics_enabled": True})
    return app.test_client()


def _native(client, key: str, workdir: Path, backend: str = "claude") -> Any:
    return client.post("/api/v1/prompt", headers=_h(key), json={
        "backend": backend, "prompt": fake("hi", reply="ok"), "workdir": str(workdir)})


def _openai(client, key: str) -> Any:
    return client.post("/openai/v1/chat/completions", headers=_h(key), json={
        "model": "codex", "messages": [{"role": "user", "content": "hi"}]})


def _anthropic(client, key: str) -> Any:
    return client.post("/anthropic/v1/messages", headers=_h(key), json={
        "model": "gemini", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})


def _usage(client, key: str, **query: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/usage", headers=_h(key), query_string=query)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["data"]


def test_each_key_sees_its_own_usage_and_an_admin_sees_all(client, tmp_path) -> None:
    for backend in ("claude", "codex", "gemini"):
        assert _native(client, KEY_A, tmp_path, backend).status_code == 200
    assert _openai(client, KEY_B).status_code == 200
    assert _anthropic(client, KEY_B).status_code == 200
    mine = _usage(client, KEY_A, group_by="backend", recent=10)
    assert sorted(g["backend"] for g in mine["groups"]) == ["claude", "codex", "gemini"]
    assert all(g["runs"] == 1 and g["input_tokens"] > 0 for g in mine["groups"])
    [claude] = [g for g in mine["groups"] if g["backend"] == "claude"]
    assert claude["cost_usd"] > 0
    assert {r["key_id"] for r in mine["recent"]} == {key_id(KEY_A)}
    assert mine["sees_all"] is False
    theirs = _usage(client, KEY_B, group_by="origin")
    assert sorted(g["origin"] for g in theirs["groups"]) == ["anthropic", "openai"]
    everyone = _usage(client, ADMIN, group_by="key,day")
    assert {g["key"]: g["runs"] for g in everyone["groups"]} == {
        key_id(KEY_A): 3, key_id(KEY_B): 2}
    assert everyone["sees_all"] is True


@pytest.mark.parametrize(("query", "field"), [
    ({"group_by": "key,planet"}, "group_by"), ({"since": "last tuesday"}, "since"),
    ({"recent": "-1"}, "recent"), ({"since": "2026-12-08", "until": "2026-12-01"}, "until")])
def test_bad_usage_query_is_400_naming_the_field(client, query, field) -> None:
    resp = client.get("/api/v1/usage", headers=_h(KEY_A), query_string=query)
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["details"]["field"] == field, body


def test_budget_stops_the_second_run_in_every_dialect_until_the_window_resets(
        client, tmp_path) -> None:
    calls = {NATIVE_KEY: lambda: _native(client, NATIVE_KEY, tmp_path),
             OPENAI_KEY: lambda: _openai(client, OPENAI_KEY),
             ANTHROPIC_KEY: lambda: _anthropic(client, ANTHROPIC_KEY)}
    for call in calls.values():
        assert call().status_code == 200
    refused = {key: call() for key, call in calls.items()}
    for resp in refused.values():
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] in ("1", "2")
    native = refused[NATIVE_KEY].get_json()
    assert native["code"] == "budget_exceeded" and "runs 1/2 seconds" in native["error"]
    openai = refused[OPENAI_KEY].get_json()["error"]
    assert openai["type"] == "requests" and "runs 1/2 seconds" in openai["message"]
    anthropic = refused[ANTHROPIC_KEY].get_json()
    assert anthropic["type"] == "error"
    assert anthropic["error"]["type"] == "rate_limit_error"
    assert "runs 1/2 seconds" in anthropic["error"]["message"]
    metrics = client.get("/metrics").get_data(as_text=True)
    rejected = (f'clinvk_budget_rejections_total{{budget="runs 1/2 seconds",'
                f'key_id="{key_id(NATIVE_KEY)}"}} 1.0')
    assert rejected in metrics
    time.sleep(2.1)
    for call in calls.values():
        assert call().status_code == 200


def test_a_job_of_a_key_past_its_budget_is_refused_at_submit(client, tmp_path) -> None:
    def submit() -> Any:
        return client.post("/api/v1/jobs", headers=_h(JOB_KEY), json={
            "backend": "codex", "prompt": fake("hi", reply="ok"), "workdir": str(tmp_path)})

    first = submit()
    assert first.status_code == 202, first.get_json()
    job_id = first.get_json()["data"]["id"]
    deadline = time.monotonic() + 20
    while (job := client.get(f"/api/v1/jobs/{job_id}", headers=_h(JOB_KEY)).get_json()["data"]
           )["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "succeeded", job  # the queued job was counted when it started
    refused = submit()
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    body = refused.get_json()
    assert body["code"] == "budget_exceeded" and "runs 1/30 seconds" in body["error"]
    parallel = client.post("/api/v1/jobs", headers=_h(JOB_KEY), json={
        "kind": "parallel", "tasks": [{"backend": "claude", "prompt": "one",
                                       "workdir": str(tmp_path)}]})
    assert parallel.status_code == 429, parallel.get_json()
    listed = client.get("/api/v1/jobs", headers=_h(JOB_KEY)).get_json()["data"]["jobs"]
    assert [j["id"] for j in listed] == [job_id]  # nothing was queued


def test_usage_metrics_count_tokens_and_cost_with_bounded_labels(client, tmp_path) -> None:
    assert _native(client, KEY_A, tmp_path, "claude").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    token_lines = [line for line in metrics.splitlines()
                   if line.startswith("clinvk_tokens_total{")]
    assert any('backend="claude"' in line and 'kind="input"' in line for line in token_lines)
    assert any(line.startswith("clinvk_cost_usd_total{") and 'backend="claude"' in line
               for line in metrics.splitlines())


def test_dashboard_is_served_offline_and_no_key_material_leaks(client, tmp_path) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"clinvk usage" in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and b"X-Api-Key" in script.data
    assert b"http" not in page.data.replace(b"http-equiv", b"")  # nothing from elsewhere
    for key in (KEY_A, ADMIN):
        assert _native(client, key, tmp_path).status_code == 200
    seen = [client.get("/metrics").data, page.data, script.data,
            client.get("/api/v1/usage?recent=50&group_by=key", headers=_h(ADMIN)).data]
    for path in Path(client.application.extensions["clinvk"].engine.store.path).parent.glob("*"):
        if path.is_file():
            seen.append(path.read_bytes())
    for key in KEYS:
        assert not any(key.encode() in blob for blob in seen), key
