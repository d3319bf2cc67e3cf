"""The Anthropic-compatible API (/anthropic/v1) driven by the official `anthropic` SDK.

A real `clinvk serve` runs with the fake CLIs; the SDK's sync and async clients, plain
and streaming (`text_stream`, `get_final_message()`), must get what they would get from
Anthropic: text, usage, ids, request ids, the exact SSE event sequence, typed exceptions
carrying our message, and no silent retry of a failed agent run.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests
from support.fakes import fake, fake_runs, marker, user
from support.procs import pids_alive, wait_until

BACKENDS = ("claude", "codex", "gemini")
REPLY = "Hello from stub (turn 1)"
CODEX_TIMEOUT = 2
VERSION = {"anthropic-version": "2023-06-01"}


class Gateway:
    def __init__(self, server: Any, fake_log: Path) -> None:
        self.server = server
        self.fake_log = fake_log
        self._client: anthropic.Anthropic | None = None

    def client(self) -> anthropic.Anthropic:
        """One client for the module, with the base_url the SDK docs suggest (no /v1)."""
        if self._client is None:
            self._client = anthropic.Anthropic(base_url=self.server.url("/anthropic"),
                                               api_key="unused", timeout=30)
        return self._client

    def async_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.server.url("/anthropic"),
                                        api_key="unused", timeout=30)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def post(self, body: dict[str, Any], headers: dict[str, str] | None = None,
             **kwargs: Any) -> requests.Response:
        return requests.post(self.server.url("/anthropic/v1/messages"), json=body,
                             headers=VERSION if headers is None else headers, timeout=30,
                             **kwargs)

    def runs(self, marker: str) -> list[dict[str, Any]]:
        return fake_runs(self.fake_log, marker)


@pytest.fixture(scope="module")
def gw(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("anthropic-fakes") / "fake.log"
    server = server_factory(
        {"server": {"stream_keepalive_secs": 1},
         "backends": {"codex": {"timeout_secs": CODEX_TIMEOUT}}},
        extra_env={"FAKE_CLI_LOG": str(log)})
    gateway = Gateway(server, log)
    yield gateway
    gateway.close()
    server.stop(timeout=10)


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, decoded data) for every event frame; comments are skipped."""
    out = []
    for frame in text.split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name, frame
        out.append((name, data))
    return out


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(gw: Gateway) -> None:
    client = gw.client()
    models = {m.id: m for m in client.models.list()}
    assert {"claude", "codex", "gemini", "claude/best", "codex/fast", "best"} <= set(models)
    assert all(m.type == "model" and m.display_name and m.created_at for m in models.values())
    assert "Claude Code" in models["claude"].display_name
    assert client.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5"
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("llama-3-70b")
    assert info.value.body["error"]["type"] == "not_found_error"


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_message(gw: Gateway, backend: str) -> None:
    mark = marker()
    client = gw.client()
    raw = client.messages.with_raw_response.create(
        model=backend, max_tokens=256, messages=user(f"say hi {mark}"))
    message = raw.parse()
    assert [(b.type, b.text) for b in message.content] == [("text", REPLY)]
    assert message.role == "assistant" and message.type == "message"
    assert message.model == backend
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.id.startswith("msg_") and len(message.id) > 20
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message._request_id == raw.headers["request-id"]
    assert raw.headers["x-clinvk-backend"] == backend
    [run] = gw.runs(mark)
    assert run["cli"] == backend and "--model" not in run["argv"] and "-m" not in run["argv"]

    again = client.messages.create(model=backend, max_tokens=256, messages=user(f"x {mark}"))
    assert again.id != message.id


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_message(gw: Gateway, backend: str) -> None:
    mark = marker()
    with gw.client().messages.stream(model=backend, max_tokens=256,
                                     messages=user(f"stream {mark}")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    assert [(b.type, b.text) for b in final.content] == [("text", REPLY)]
    assert final.stop_reason == "end_turn" and final.id.startswith("msg_")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert len(gw.runs(mark)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_client_plain_and_streaming(gw: Gateway, backend: str) -> None:
    mark = marker()

    async def main() -> tuple[Any, str, Any, Any]:
        async with gw.async_client() as client:
            plain = await client.messages.create(model=backend, max_tokens=64,
                                                 messages=user(f"async {mark}"))
            async with client.messages.stream(model=backend, max_tokens=64,
                                              messages=user(f"async stream {mark}")) as stream:
                text = "".join([t async for t in stream.text_stream])
                final = await stream.get_final_message()
            raw = await client.messages.create(model=backend, max_tokens=64, stream=True,
                                               messages=user(f"async raw {mark}"))
            kinds = [event.type async for event in raw]
            return plain, text, final, kinds

    plain, text, final, kinds = asyncio.run(main())
    assert plain.content[0].text == REPLY and plain.usage.output_tokens > 0
    assert text == REPLY and final.usage.output_tokens > 0
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(gw.runs(mark)) == 3


def test_seed_base_url_with_v1_works_too(gw: Gateway) -> None:
    """The seed documents base_url ".../anthropic/v1"; the SDK then calls /anthropic/v1/v1/..."""
    with anthropic.Anthropic(base_url=gw.server.url("/anthropic/v1"), api_key="unused",
                             timeout=30) as client:
        message = client.messages.create(model="claude", max_tokens=16,
                                         messages=user(f"seed {marker()}"))
        assert message.content[0].text == REPLY
        with client.messages.stream(model="gemini", max_tokens=16,
                                    messages=user(f"seed {marker()}")) as stream:
            assert "".join(stream.text_stream) == REPLY
        assert "claude" in [m.id for m in client.models.list()]


def test_exact_event_sequence(gw: Gateway) -> None:
    resp = gw.post({"model": "claude", "max_tokens": 64, "stream": True,
                    "messages": user(f"events {marker()}")})
    assert resp.status_code == 200 and resp.headers["request-id"]
    events = sse_events(resp.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"} and len(names) > 6  # real deltas
    start = events[0][1]["message"]
    assert start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["content"] == [] and start["role"] == "assistant"
    assert events[1][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == REPLY
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("backend", ("claude", "gemini"))
def test_first_delta_arrives_while_backend_still_runs(gw: Gateway, backend: str) -> None:
    started = time.monotonic()
    seen: list[tuple[float, str]] = []
    with gw.client().messages.stream(
            model=backend, max_tokens=64,
            messages=user(fake(f"slow {marker()}", pause_after_first=2))) as stream:
        for text in stream.text_stream:
            seen.append((time.monotonic() - started, text))
    # The fake pauses 2 s after its first chunk: that chunk must be here long before the rest.
    assert seen[1][0] - seen[0][0] >= 1.5, seen
    assert "".join(t for _, t in seen) == REPLY


def test_system_blocks_and_transcript(gw: Gateway) -> None:
    mark = marker()
    gw.client().messages.create(
        model="codex", max_tokens=64,
        system=[{"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in English.", "cache_control":
                 {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": f"first question {mark}"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "first answer"}]},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ])
    [run] = gw.runs(mark)
    # codex has no system-prompt flag: the adapter puts it in front of the prompt.
    assert run["stdin"] == (
        "You are terse.\nAnswer in English.\n\n"
        "This conversation continues from earlier turns, reproduced below oldest first "
        "between <conversation> tags. Reply to the new user message that follows them.\n\n"
        "<conversation>\n<user>\n"
        f"first question {mark}\n"
        "</user>\n<assistant>\nfirst answer\n</assistant>\n</conversation>\n\n"
        "second question")


def test_ignored_fields_are_accepted(gw: Gateway) -> None:
    mark = marker()
    # Sent as extra_body: SDK releases differ in which of them create() takes as arguments.
    message = gw.client().messages.create(
        model="gemini", max_tokens=1, messages=user(f"ignored {mark}"), system="Be brief.",
        extra_headers={"anthropic-beta": "some-beta-2025-01-01"},
        extra_body={"temperature": 0.1, "top_p": 0.5, "top_k": 3, "stop_sequences": ["END"],
                    "metadata": {"user_id": "u1"}, "tool_choice": {"type": "auto"},
                    "thinking": {"type": "disabled"}, "some_future_field": True})
    assert message.content[0].text == REPLY
    assert len(gw.runs(mark)) == 1


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}, "tools: not supported"),
    ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "AAAA"}}]}]},
     "messages[0].content[0]: image blocks are not supported"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]},
     "tool_result blocks are not supported"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "last message must come from the user"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": []}, "messages"),
    ({"system": [{"type": "image", "source": {}}]}, "system must be"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_bad_requests_are_400(gw: Gateway, kwargs: dict[str, Any], words: str) -> None:
    args: dict[str, Any] = {"model": "claude", "max_tokens": 16, "messages": user("hello")}
    args.update(kwargs)
    with pytest.raises(anthropic.BadRequestError) as info:
        gw.client().messages.create(**args)
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert words in body["error"]["message"] and words in str(info.value)
    assert body["request_id"] == info.value.response.headers["request-id"]


def test_raw_request_errors(gw: Gateway) -> None:
    def check(resp: requests.Response, status: int, kind: str, words: str) -> None:
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == kind
        assert words in body["error"]["message"]
        assert body["request_id"] == resp.headers["request-id"]

    ok = {"model": "claude", "max_tokens": 8, "messages": user("x")}
    check(gw.post({"model": "claude", "messages": user("x")}), 400,
          "invalid_request_error", "max_tokens: is required")
    resp = gw.post(ok, headers={})  # no anthropic-version: read as 2023-06-01, as Go did
    assert resp.status_code == 200 and resp.json()["type"] == "message", resp.text
    check(gw.post(ok, headers={"anthropic-version": "latest"}), 400,
          "invalid_request_error", "not a valid version")
    check(gw.post({**ok, "max_tokens": "8"}), 400, "invalid_request_error", "max_tokens")
    check(requests.post(gw.server.url("/anthropic/v1/messages"), data="{oops",
                        headers={**VERSION, "Content-Type": "application/json"}, timeout=10),
          400, "invalid_request_error", "not valid JSON")
    check(requests.post(gw.server.url("/anthropic/v1/messages"), data="hi",
                        headers={**VERSION, "Content-Type": "text/plain"}, timeout=10),
          415, "invalid_request_error", "Content-Type")
    check(requests.get(gw.server.url("/anthropic/v1/complete"), headers=VERSION, timeout=10),
          404, "not_found_error", "no route")


def test_cors_preflight_needs_no_version_header(gw: Gateway) -> None:
    resp = requests.options(gw.server.url("/anthropic/v1/messages"), timeout=10, headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key,anthropic-version"})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_unknown_model_is_404_not_found_error(gw: Gateway) -> None:
    for stream in (False, True):
        with pytest.raises(anthropic.NotFoundError) as info:
            gw.client().messages.create(model="mistral-large", max_tokens=8,
                                        messages=user("x"), stream=stream)
        error = info.value.body["error"]
        assert error["type"] == "not_found_error"
        assert "'mistral-large' does not exist" in error["message"]


# --------------------------------------------------------------------------- failed runs


def test_failed_run_is_502_and_not_retried(gw: Gateway) -> None:
    mark = marker()
    client = gw.client()
    assert client.max_retries == 2
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="claude", max_tokens=8,
                               messages=user(fake(f"fail {mark}", error=500)))
    err = info.value
    assert err.status_code == 502
    assert err.body["error"]["type"] == "api_error"
    assert "Internal server error (stub injected)" in err.body["error"]["message"]
    assert "Internal server error (stub injected)" in str(err)
    assert err.response.headers["x-should-retry"] == "false"
    assert len(gw.runs(mark)) == 1


def test_timed_out_run_is_504_timeout_error_and_not_retried(gw: Gateway) -> None:
    mark = marker()
    with pytest.raises(anthropic.InternalServerError) as info:
        gw.client().messages.create(model="codex", max_tokens=8,
                                    messages=user(fake(f"hang {mark}", hang=True)))
    assert info.value.status_code == 504
    assert info.value.body["error"]["type"] == "timeout_error"
    assert f"timed out after {CODEX_TIMEOUT}" in info.value.body["error"]["message"]
    assert len(gw.runs(mark)) == 1


def test_failure_mid_stream_is_an_error_event(gw: Gateway) -> None:
    mark = marker()
    texts = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with gw.client().messages.stream(
                model="claude", max_tokens=8,
                messages=user(fake(f"die {mark}", die_midstream=True))) as stream:
            for text in stream.text_stream:
                texts.append(text)
    assert "".join(texts).startswith("Hello")
    assert info.value.body["error"]["type"] == "api_error"
    assert "exited with code 1" in info.value.body["error"]["message"]
    assert len(gw.runs(mark)) == 1

    resp = gw.post({"model": "gemini", "max_tokens": 8, "stream": True,
                    "messages": user(fake(f"fail {marker()}", error=500))})
    events = sse_events(resp.text)
    assert [n for n, _ in events] == ["message_start", "content_block_start", "error"]
    assert "Internal error encountered" in events[-1][1]["error"]["message"]
    assert resp.text.endswith("\n\n")  # the stream ends cleanly after the error event


# --------------------------------------------------------------------------- SSE hygiene


def test_sse_headers_and_pings_while_silent(gw: Gateway) -> None:
    resp = gw.post({"model": "claude", "max_tokens": 8, "stream": True,
                    "messages": user(fake(f"quiet {marker()}", delay=1.8))}, stream=True)
    with resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        body = b"".join(resp.iter_content(chunk_size=None)).decode()
    names = [name for name, _ in sse_events(body)]
    assert names[:3] == ["message_start", "content_block_start", "ping"], names
    assert names[-1] == "message_stop"


def test_client_going_away_kills_the_backend(gw: Gateway, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    resp = gw.post({"model": "gemini", "max_tokens": 8, "stream": True,
                    "messages": user(fake(f"hang {marker()}", hang=True,
                                          pidfile=str(pidfile)))}, stream=True)
    assert next(resp.iter_lines()) == b"event: message_start"
    assert wait_until(lambda: pids_alive(pidfile), 15)
    resp.close()
    assert wait_until(lambda: not pids_alive(pidfile), 15), pids_alive(pidfile)


def test_openapi_documents_the_routes(gw: Gateway) -> None:
    spec = requests.get(gw.server.url("/openapi.json"), timeout=10).json()
    post = spec["paths"]["/anthropic/v1/messages"]["post"]
    assert post["operationId"] == "anthropicCreateMessage"
    assert set(post["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "529" in post["responses"]
    assert any(p["name"] == "anthropic-version" and not p["required"]
               for p in post["parameters"])
    assert "/anthropic/v1/models" in spec["paths"]
    assert not any("/v1/v1/" in path for path in spec["paths"])
