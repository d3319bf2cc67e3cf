"""What the Go clinvk's own API scripts do, against ``clinvk serve`` in compatibility mode
(``server.response_envelope: false``) with the fake CLIs: plain HTTP calls with the bodies
and headers of the Go documentation, on every Go route, checking the fields Go answered
with. Differences that remain on purpose are listed in docs/migrating.md."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from support.fakes import fake


@pytest.fixture(scope="module")
def go(server_factory, tmp_path_factory) -> Any:
    work = tmp_path_factory.mktemp("go-work")
    srv = server_factory({"server": {"response_envelope": False}})
    srv.work = str(work)
    return srv


def _post(srv, path: str, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(srv.url(path), data=json.dumps(body), timeout=60,
                         headers={"Content-Type": "application/json", **headers})


def test_prompt(go) -> None:
    resp = _post(go, "/api/v1/prompt", {"backend": "claude", "prompt": fake("hi", reply="Hello"),
                                        "workdir": go.work})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"session_id", "backend", "exit_code", "duration_ms", "output"} <= set(body)
    assert body["backend"] == "claude" and body["exit_code"] == 0 and body["output"] == "Hello"
    assert len(body["session_id"]) == 32
    assert set(body["token_usage"]) >= {"input_tokens", "output_tokens"}


def test_prompt_stream(go) -> None:
    resp = requests.post(go.url("/api/v1/prompt"), json={
        "backend": "gemini", "prompt": fake("hi", reply="Hey"), "output_format": "stream-json",
        "workdir": go.work}, stream=True, timeout=60)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in resp.iter_lines() if line]
    types = [e["type"] for e in events]
    assert types[0] == "init" and types[-1] == "done" and "message" in types
    assert all(e["backend"] == "gemini" and e["session_id"] for e in events)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))


def test_dry_run_says_would_execute(go) -> None:
    body = _post(go, "/api/v1/prompt", {"backend": "codex", "prompt": "x", "dry_run": True,
                                        "workdir": go.work}).json()
    assert body["output"].startswith("Would execute: ") and "codex" in body["output"]


def test_parallel(go) -> None:
    resp = _post(go, "/api/v1/parallel", {"tasks": [
        {"backend": "claude", "prompt": fake("a", reply="A"), "workdir": go.work},
        {"backend": "codex", "prompt": fake("b", reply="B"), "workdir": go.work}],
        "max_parallel": 2})
    body = resp.json()
    assert resp.status_code == 200, body
    assert (body["total_tasks"], body["completed"], body["failed"]) == (2, 2, 0)
    assert "total_duration_ms" in body
    assert [r["output"] for r in body["results"]] == ["A", "B"]
    assert all("session_id" not in r or not r["session_id"] for r in body["results"])


def test_chain(go) -> None:
    body = _post(go, "/api/v1/chain", {"steps": [
        {"name": "analyze", "backend": "claude", "prompt": fake("one", reply="ONE"),
         "workdir": go.work},
        {"backend": "codex", "prompt": "got {{previous}} FAKE{\"reply\": \"{{previous}}!\"}"}],
        "pass_working_dir": True}).json()
    assert body["total_steps"] == 2 and body["completed_steps"] == 2
    assert [r["step"] for r in body["results"]] == [1, 2]
    assert body["results"][0]["name"] == "analyze"
    assert body["results"][1]["output"] == "ONE!"
    assert "failed_step" not in body or body["failed_step"] in (0, None)


def test_compare(go) -> None:
    body = _post(go, "/api/v1/compare", {"backends": ["claude", "gemini"],
                                         "prompt": fake("q", reply="same"),
                                         "workdir": go.work}).json()
    assert body["prompt"].startswith("q") and body["backends"] == ["claude", "gemini"]
    assert [r["backend"] for r in body["results"]] == ["claude", "gemini"]
    assert [r["output"] for r in body["results"]] == ["same", "same"]
    assert "total_duration_ms" in body


def test_backends(go) -> None:
    body = requests.get(go.url("/api/v1/backends"), timeout=10).json()
    assert [b["name"] for b in body["backends"]] == ["claude", "codex", "gemini"]
    assert all(b["available"] is True for b in body["backends"])


def test_sessions_list_get_delete(go) -> None:
    sid = _post(go, "/api/v1/prompt", {"backend": "codex", "prompt": fake("s", reply="S"),
                                       "workdir": go.work}).json()["session_id"]
    body = requests.get(go.url("/api/v1/sessions"), params={"backend": "codex", "limit": 10},
                        timeout=10).json()
    assert {"sessions", "total", "limit", "offset"} <= set(body)
    assert sid in [s["id"] for s in body["sessions"]]
    one = requests.get(go.url(f"/api/v1/sessions/{sid[:8]}"), timeout=10)
    assert one.status_code == 200 and one.json()["id"] == sid
    assert {"id", "backend", "created_at", "last_used"} <= set(one.json())
    gone = requests.delete(go.url(f"/api/v1/sessions/{sid}"), timeout=10)
    assert gone.status_code == 200 and gone.json() == {"deleted": True, "id": sid}
    assert requests.get(go.url(f"/api/v1/sessions/{sid}"), timeout=10).status_code == 404


def test_health(go) -> None:
    resp = requests.get(go.url("/health"), timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] in ("ok", "degraded")


def test_openai_models_and_chat(go) -> None:
    models = requests.get(go.url("/openai/v1/models"), timeout=10).json()
    assert models["object"] == "list" and {"claude", "codex", "gemini"} <= {
        m["id"] for m in models["data"]}
    for model in ("claude", "gpt-4o", "some-model-go-passed-through"):
        resp = _post(go, "/openai/v1/chat/completions", {"model": model, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": fake("hi", reply="hello")}]})
        assert resp.status_code == 200, (model, resp.text)
        body = resp.json()
        assert body["object"] == "chat.completion" and body["model"] == model
        message = body["choices"][0]["message"]
        assert (message["role"], message["content"]) == ("assistant", "hello")
        assert body["choices"][0]["finish_reason"] == "stop"


def test_openai_stream(go) -> None:
    resp = requests.post(go.url("/openai/v1/chat/completions"), json={
        "model": "codex", "stream": True,
        "messages": [{"role": "user", "content": fake("hi", reply="streamed")}]},
        stream=True, timeout=60)
    lines = [line for line in resp.iter_lines(decode_unicode=True) if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1] if line.startswith("data: ")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"])
    assert text == "streamed"


def test_anthropic_messages_without_version_header(go) -> None:
    for model in ("claude", "claude-sonnet-4", "whatever-else"):
        resp = _post(go, "/anthropic/v1/messages", {"model": model, "max_tokens": 64,
                                                    "messages": [{"role": "user", "content":
                                                                  fake("hi", reply="yo")}]})
        assert resp.status_code == 200, (model, resp.text)
        body = resp.json()
        assert body["type"] == "message" and body["role"] == "assistant"
        assert body["content"] == [{"type": "text", "text": "yo"}]
        assert body["stop_reason"] == "end_turn"


def test_openapi_document(go) -> None:
    resp = requests.get(go.url("/openapi.json"), timeout=10)
    assert resp.status_code == 200
    operations = {op.get("operationId") for item in resp.json()["paths"].values()
                  for op in item.values() if isinstance(op, dict)}
    assert {"executePrompt", "executeParallel", "executeChain", "executeCompare",
            "listBackends", "listSessions", "getSession", "deleteSession"} <= operations
