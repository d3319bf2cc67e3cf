"""The vendor routes as the Go clinvk answered them: ``anthropic-version`` optional, and a
model that names no backend or alias run on the default backend (compatibility mode, or
``server.unknown_model: default_backend``)."""

from __future__ import annotations

import pytest
from support.fakes import fake, fake_runs

CHAT = "/openai/v1/chat/completions"
MESSAGES = "/anthropic/v1/messages"


def _chat(client, model: str, text: str = "hi"):
    return client.post(CHAT, json={"model": model,
                                   "messages": [{"role": "user", "content": text}]})


def _message(client, model: str, text: str = "hi", **headers: str):
    return client.post(MESSAGES, headers=headers, json={
        "model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]})


def test_anthropic_version_is_optional(client) -> None:
    resp = _message(client, "claude", fake("hi", reply="hello"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["content"][0]["text"] == "hello"
    resp = _message(client, "claude", **{"anthropic-version": "2023-06-01"})
    assert resp.status_code == 200


def test_a_malformed_anthropic_version_is_still_a_400(client) -> None:
    resp = _message(client, "claude", **{"anthropic-version": "latest"})
    body = resp.get_json()
    assert resp.status_code == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in body["error"]["message"]


@pytest.mark.parametrize("overrides", [
    {"server.response_envelope": False},  # auto: Go compatibility mode routes unknown models
    {"server.unknown_model": "default_backend"},
])
def test_an_unknown_model_runs_on_the_default_backend(app_factory, monkeypatch, tmp_path,
                                                      overrides) -> None:
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    app = app_factory({"default_backend": "codex", **overrides})
    client = app.test_client()
    resp = _chat(client, "my-team-model-v7", fake("hi", reply="from codex"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "from codex"
    assert resp.headers["X-Clinvk-Backend"] == "codex"
    resp = _message(client, "another-unknown", fake("hey", reply="again"))
    assert resp.status_code == 200, resp.get_json()
    runs = fake_runs(log)
    assert [r["cli"] for r in runs] == ["codex", "codex"]
    assert "my-team-model-v7" in runs[0]["argv"]  # passed through as --model / -m
    assert "another-unknown" in runs[1]["argv"]
    # the catalogue still lists only what is configured
    assert client.get("/openai/v1/models/my-team-model-v7").status_code == 404


@pytest.mark.parametrize("overrides", [{}, {"server.response_envelope": False,
                                             "server.unknown_model": "error"}])
def test_an_unknown_model_is_a_404_in_the_strict_modes(app_factory, overrides) -> None:
    client = app_factory(overrides).test_client()
    resp = _chat(client, "my-team-model-v7")
    assert resp.status_code == 404, resp.get_json()
    assert "my-team-model-v7" in resp.get_json()["error"]["message"]
    resp = _message(client, "my-team-model-v7")
    assert resp.status_code == 404 and resp.get_json()["error"]["type"] == "not_found_error"


def test_the_unknown_model_key_is_checked(app_factory) -> None:
    from clinvk.core.config import load_config
    from clinvk.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown_model"):
        load_config(env={"CLINVK_SERVER_UNKNOWN_MODEL": "guess"}).with_overrides({})
