"""Both compatible APIs at the gateway's limits, through the official SDKs.

API keys (401), rate limits (429 + Retry-After), saturation (503 on OpenAI routes, 529
``overloaded_error`` on Anthropic routes), a backend that is not installed (503, not
retried) and an oversized body (413): each must reach the SDK as its own typed exception
carrying our message in the vendor's error format.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests
from support.fakes import fake
from support.procs import pids_alive, wait_until

KEY = "sk-clinvk-test-key-1"
VERSION = {"anthropic-version": "2023-06-01"}


def oa(server: Any, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("api_key", "unused")
    return openai.OpenAI(base_url=server.url("/openai/v1"), timeout=30, **kwargs)


def an(server: Any, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("api_key", "unused")
    return anthropic.Anthropic(base_url=server.url("/anthropic"), timeout=30, **kwargs)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def access_log_count(server: Any, request_id: str, settle: float = 1.0) -> int:
    """Access lines for ``request_id``; gunicorn writes them just after the response."""
    deadline = time.monotonic() + settle
    count = server.log().count(f"rid={request_id}")
    while not count and time.monotonic() < deadline:
        time.sleep(0.05)
        count = server.log().count(f"rid={request_id}")
    time.sleep(0.2)  # a retry would have been logged by now
    return server.log().count(f"rid={request_id}")


# --------------------------------------------------------------------------- 401


@pytest.fixture(scope="module")
def keyed(server_factory) -> Any:
    server = server_factory(extra_env={"CLINVK_API_KEYS": KEY})
    yield server
    server.stop(timeout=10)


def test_openai_sdk_authentication(keyed: Any) -> None:
    with oa(keyed, api_key="wrong-key") as client, \
            pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    err = info.value
    assert err.status_code == 401 and err.code == "invalid_api_key"
    assert err.type == "invalid_request_error"
    assert err.message.endswith(err.body["message"]) and err.body["message"]
    assert err.response.headers["x-request-id"]

    missing = requests.get(keyed.url("/openai/v1/models"), timeout=10)  # no key at all
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"

    with oa(keyed, api_key=KEY) as client:  # the SDK sends Authorization: Bearer KEY
        assert "claude" in [m.id for m in client.models.list()]
        reply = client.chat.completions.create(model="claude", messages=user("hi"))
        assert reply.choices[0].message.content == "Hello from stub (turn 1)"


def test_anthropic_sdk_authentication(keyed: Any) -> None:
    with an(keyed, api_key="wrong-key") as client, \
            pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model="claude", max_tokens=8, messages=user("hi"))
    body = info.value.body
    assert info.value.status_code == 401
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["error"]["message"] in str(info.value)
    assert body["request_id"] == info.value.response.headers["request-id"]
    with an(keyed, api_key=KEY) as client:  # the SDK sends X-Api-Key: KEY
        message = client.messages.create(model="gemini", max_tokens=8, messages=user("hi"))
        assert message.content[0].text == "Hello from stub (turn 1)"


# --------------------------------------------------------------------------- 429


@pytest.fixture(scope="module")
def limited(server_factory) -> Any:
    server = server_factory({"server": {"rate_limit_enabled": True, "rate_limit_rps": 1,
                                        "rate_limit_burst": 1}})
    yield server
    server.stop(timeout=10)


def _until_limited(call: Any, error: type[Exception]) -> Exception:
    for _ in range(8):
        try:
            call()
        except error as exc:
            return exc
    pytest.fail("rate limiting did not refuse any of 8 quick requests")


def test_openai_sdk_rate_limit(limited: Any) -> None:
    with oa(limited, max_retries=0) as client:
        err = _until_limited(client.models.list, openai.RateLimitError)
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert err.type == "requests" and "rate limit" in err.message
    assert int(err.response.headers["Retry-After"]) >= 1
    with oa(limited, max_retries=3) as client:  # a 429 is retryable: the SDK waits and wins
        assert "codex" in [m.id for m in client.models.list()]


def test_anthropic_sdk_rate_limit(limited: Any) -> None:
    with an(limited, max_retries=0) as client:
        err = _until_limited(client.models.list, anthropic.RateLimitError)
    assert err.status_code == 429 and err.body["error"]["type"] == "rate_limit_error"
    assert int(err.response.headers["Retry-After"]) >= 1
    with an(limited, max_retries=3) as client:
        assert "codex" in [m.id for m in client.models.list()]


# --------------------------------------------------------------------------- 503/529, 413


@pytest.fixture(scope="module")
def tight(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("limits-fakes") / "fake.log"
    server = server_factory(
        {"server": {"max_concurrent_runs": 1, "queue_timeout_secs": 0,
                    "max_request_body_bytes": 4096},
         "backends": {"gemini": {"command": "/nonexistent/bin/gemini"}}},
        extra_env={"FAKE_CLI_LOG": str(log)})
    server.fake_log = log
    yield server
    server.stop(timeout=10)


def test_saturated_server(tight: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    hold = requests.post(tight.url("/openai/v1/chat/completions"), stream=True, timeout=30,
                         json={"model": "claude", "stream": True, "messages": user(fake(
                             "hold the only slot", hang=True, pidfile=str(pidfile)))})
    try:
        assert hold.status_code == 200
        assert wait_until(lambda: pids_alive(pidfile), 15)

        with oa(tight, max_retries=0) as client:
            for stream in (False, True):
                with pytest.raises(openai.InternalServerError) as info:
                    client.chat.completions.create(model="codex", messages=user("x"),
                                                   stream=stream)
                err = info.value
                assert err.status_code == 503 and err.code == "server_saturated"
                assert err.type == "server_error" and "run slots are busy" in err.message
                assert err.response.headers["Retry-After"] == "1"

        with an(tight, max_retries=0) as client:
            with pytest.raises(anthropic.InternalServerError) as ainfo:
                client.messages.create(model="codex", max_tokens=8, messages=user("x"))
            aerr = ainfo.value
            assert aerr.status_code == 529
            if hasattr(anthropic, "OverloadedError"):
                assert isinstance(aerr, anthropic.OverloadedError)
            assert aerr.body["error"]["type"] == "overloaded_error"
            assert "run slots are busy" in aerr.body["error"]["message"]
            assert aerr.response.headers["Retry-After"] == "1"
    finally:
        hold.close()
    assert wait_until(lambda: not pids_alive(pidfile), 15)

    def free() -> bool:
        return requests.post(tight.url("/openai/v1/chat/completions"), timeout=30, json={
            "model": "codex", "messages": user("slot is free again")}).status_code == 200

    assert wait_until(free, 10, interval=0.3)


def test_backend_not_installed_is_503_and_not_retried(tight: Any) -> None:
    rid = f"unavailable-{uuid.uuid4().hex[:8]}"
    with oa(tight) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gemini-2.5-pro", messages=user("x"),
                                       extra_headers={"X-Request-ID": rid})
    err = info.value
    assert err.status_code == 503 and err.code == "backend_unavailable"
    assert "'gemini' is not available" in err.message
    assert err.response.headers["x-should-retry"] == "false"
    assert access_log_count(tight, rid) == 1  # max_retries=2, yet one request

    rid = f"unavailable-{uuid.uuid4().hex[:8]}"
    with an(tight) as client, pytest.raises(anthropic.InternalServerError) as ainfo:
        client.messages.create(model="gemini", max_tokens=8, messages=user("x"),
                               extra_headers={"X-Request-ID": rid})
    assert ainfo.value.status_code == 503
    assert ainfo.value.body["error"]["type"] == "api_error"
    assert "'gemini' is not available" in ainfo.value.body["error"]["message"]
    assert access_log_count(tight, rid) == 1


def test_oversized_body_is_413(tight: Any) -> None:
    big = user("x" * 6000)
    with oa(tight) as client, pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="claude", messages=big)
    assert info.value.status_code == 413
    assert info.value.type == "invalid_request_error"
    assert "too large" in info.value.message

    with an(tight) as client, pytest.raises(anthropic.APIStatusError) as ainfo:
        client.messages.create(model="claude", max_tokens=8, messages=big)
    assert ainfo.value.status_code == 413
    assert ainfo.value.body["error"]["type"] == "request_too_large"
