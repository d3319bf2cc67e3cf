"""The OpenAI-compatible API (/openai/v1) driven by the official `openai` SDK.

A real `clinvk serve` runs with the fake CLIs; the SDK's sync and async clients, plain
and streaming, must get exactly what they would get from OpenAI: text, usage, ids,
request ids, typed exceptions carrying our message, and no silent retry of a failed
agent run (counted in the fakes' own invocation log).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from support.fakes import fake, fake_runs, marker, user
from support.procs import pids_alive, wait_until

BACKENDS = ("claude", "codex", "gemini")
REPLY = "Hello from stub (turn 1)"
# The fake codex is killed after this long (a backend timeout -> 504).
CODEX_TIMEOUT = 2
# backends.codex.model in the server's config: what a bare "codex" runs.
CODEX_DEFAULT = "gpt-5.4-mini"


class Gateway:
    def __init__(self, server: Any, fake_log: Path) -> None:
        self.server = server
        self.fake_log = fake_log
        self.base_url = server.url("/openai/v1")
        self._client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        """One client for the module (as an application would hold one)."""
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.base_url, api_key="unused", timeout=30)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("timeout", 30)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key="unused", **kwargs)

    def runs(self, marker: str) -> list[dict[str, Any]]:
        """The fake CLI invocations whose prompt carried ``marker``."""
        return fake_runs(self.fake_log, marker)


@pytest.fixture(scope="module")
def gw(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("openai-fakes") / "fake.log"
    server = server_factory(
        {"server": {"stream_keepalive_secs": 1},
         "backends": {"codex": {"timeout_secs": CODEX_TIMEOUT, "model": CODEX_DEFAULT}}},
        extra_env={"FAKE_CLI_LOG": str(log)})
    gateway = Gateway(server, log)
    yield gateway
    gateway.close()
    server.stop(timeout=10)


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(gw: Gateway) -> None:
    client = gw.client()
    models = {m.id: m for m in client.models.list()}
    assert {"claude", "codex", "gemini", "claude/best", "codex/fast", "gemini/balanced",
            "fast"} <= set(models)
    assert models["claude"].owned_by == "anthropic"
    assert models["codex/fast"].owned_by == "openai"
    assert models["gemini"].owned_by == "google"
    assert models["fast"].owned_by == "anthropic"  # the default backend is claude
    assert all(m.object == "model" and m.created > 0 for m in models.values())

    assert client.models.retrieve("codex/gpt-5.5").owned_by == "openai"
    assert client.models.retrieve("gpt-4o").owned_by == "openai"
    assert client.models.retrieve("gemini-2.5-pro").owned_by == "google"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("llama-3-70b")
    assert info.value.code == "model_not_found"
    assert "llama-3-70b" in info.value.message


# --------------------------------------------------------------------------- completions


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_completion(gw: Gateway, backend: str) -> None:
    mark = marker()
    client = gw.client()
    raw = client.chat.completions.with_raw_response.create(
        model=backend, messages=user(f"say hi {mark}"))
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.model == backend
    assert completion.id.startswith("chatcmpl-") and len(completion.id) > 20
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion._request_id == raw.headers["x-request-id"]
    assert raw.headers["x-clinvk-backend"] == backend

    [run] = gw.runs(mark)
    assert run["cli"] == backend
    argv = run["argv"]
    if backend == "codex":  # a bare name runs the configured default model...
        assert argv[argv.index("-m" if "-m" in argv else "--model") + 1] == CODEX_DEFAULT
    else:  # ...or, with none configured, passes no model flag at all
        assert "--model" not in argv and "-m" not in argv

    again = client.chat.completions.create(model=backend, messages=user(f"again {mark}"))
    assert again.id != completion.id


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_completion(gw: Gateway, backend: str) -> None:
    mark = marker()
    stream = gw.client().chat.completions.create(
        model=backend, messages=user(f"stream {mark}"), stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens > 0
    assert usage_chunk.usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == backend for c in chunks)
    assert len(gw.runs(mark)) == 1


def test_streaming_without_usage_has_no_usage_chunk(gw: Gateway) -> None:
    chunks = list(gw.client().chat.completions.create(
        model="gemini", messages=user(f"no usage {marker()}"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_client_plain_and_streaming(gw: Gateway, backend: str) -> None:
    mark = marker()

    async def main() -> tuple[Any, str, Any]:
        async with gw.async_client() as client:
            plain = await client.chat.completions.create(
                model=backend, messages=user(f"async {mark}"))
            stream = await client.chat.completions.create(
                model=backend, messages=user(f"async stream {mark}"), stream=True,
                stream_options={"include_usage": True})
            text, usage = "", None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                if chunk.usage:
                    usage = chunk.usage
            return plain, text, usage

    plain, text, usage = asyncio.run(main())
    assert plain.choices[0].message.content == REPLY and plain.usage.completion_tokens > 0
    assert text == REPLY and usage.total_tokens > 0
    assert len(gw.runs(mark)) == 2


@pytest.mark.parametrize("backend", ("claude", "gemini"))
def test_first_delta_arrives_while_backend_still_runs(gw: Gateway, backend: str) -> None:
    started = time.monotonic()
    stream = gw.client().chat.completions.create(
        model=backend, messages=user(fake(f"slow {marker()}", pause_after_first=2)),
        stream=True)
    seen: list[tuple[float, str]] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append((time.monotonic() - started, chunk.choices[0].delta.content))
    # The fake pauses 2 s after its first chunk: that chunk must be here long before the rest.
    assert seen[1][0] - seen[0][0] >= 1.5, seen
    assert "".join(t for _, t in seen) == REPLY


def test_codex_stream_opens_before_its_whole_message(gw: Gateway) -> None:
    """Codex prints whole messages; the stream (role chunk) still starts at once."""
    stream = gw.client().chat.completions.create(
        model="codex", messages=user(fake(f"slow {marker()}", delay=1.5)), stream=True)
    first = next(iter(stream))
    role_at = time.monotonic()
    assert first.choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REPLY
    assert time.monotonic() - role_at >= 1.2  # the role chunk did not wait for the backend


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(("model", "backend", "model_flag"), [
    ("claude", "claude", None),
    ("codex", "codex", CODEX_DEFAULT),
    ("codex/", "codex", CODEX_DEFAULT),
    ("claude-sonnet-4-5", "claude", "claude-sonnet-4-5"),
    ("sonnet", "claude", "sonnet"),
    ("claude/best", "claude", "opus"),
    ("fast", "claude", "haiku"),
    ("gpt-5.5", "codex", "gpt-5.5"),
    ("o3", "codex", "o3"),
    ("codex/gpt-5.5-codex", "codex", "gpt-5.5-codex"),
    ("openai/gpt-5.4-mini", "codex", "gpt-5.4-mini"),
    ("codex/balanced", "codex", "gpt-5.5"),
    ("gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
    ("gemini/", "gemini", None),
])
def test_model_mapping(gw: Gateway, model: str, backend: str, model_flag: str | None) -> None:
    mark = marker()
    raw = gw.client().chat.completions.with_raw_response.create(
        model=model, messages=user(f"map {mark}"))
    assert raw.parse().model == model
    assert raw.headers["x-clinvk-backend"] == backend
    [run] = gw.runs(mark)
    assert run["cli"] == backend
    argv = run["argv"]
    flag = "-m" if "-m" in argv else "--model"
    if model_flag is None:
        assert "--model" not in argv and "-m" not in argv
    else:
        assert argv[argv.index(flag) + 1] == model_flag
        assert raw.headers["x-clinvk-model"] == model_flag


def test_system_messages_and_transcript(gw: Gateway) -> None:
    mark = marker()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"first question {mark}"},
        {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": [{"type": "text", "text": "second question"},
                                     {"type": "text", "text": "in two parts"}]},
    ]
    reply = gw.client().chat.completions.create(model="claude", messages=messages)
    assert reply.choices[0].message.content == REPLY
    [run] = gw.runs(mark)
    argv = run["argv"]
    assert argv[argv.index("--append-system-prompt") + 1] == "You are terse.\n\nAnswer in English."
    assert run["stdin"] == (
        "This conversation continues from earlier turns, reproduced below oldest first "
        "between <conversation> tags. Reply to the new user message that follows them.\n"
        "\n"
        "<conversation>\n"
        "<user>\n"
        f"first question {mark}\n"
        "</user>\n"
        "<assistant>\n"
        "first answer\n"
        "</assistant>\n"
        "</conversation>\n"
        "\n"
        "second question\n"
        "in two parts")


def test_single_user_message_is_sent_verbatim(gw: Gateway) -> None:
    mark = marker()
    text = f"--help is not an option {mark}"
    gw.client().chat.completions.create(model="gemini", messages=user(text))
    [run] = gw.runs(mark)
    assert run["stdin"] == text


def test_ignored_sampling_fields_are_accepted(gw: Gateway) -> None:
    mark = marker()
    reply = gw.client().chat.completions.create(
        model="claude", messages=user(f"ignored {mark}"), temperature=0.2, top_p=0.9,
        max_tokens=50, max_completion_tokens=60, presence_penalty=0.1, frequency_penalty=0.1,
        seed=7, stop=["END"], user="someone", n=1, logit_bias={"50256": -100},
        metadata={"k": "v"}, store=False, tool_choice="none", response_format={"type": "text"},
        extra_body={"some_future_field": {"x": 1}})
    assert reply.choices[0].message.content == REPLY
    assert len(gw.runs(mark)) == 1


# --------------------------------------------------------------------------- refusals


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(("kwargs", "param", "words"), [
    ({"n": 2}, "n", "n > 1"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
     "tools", "tools is not supported"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions", "not supported"),
    ({"tool_choice": "required"}, "tool_choice", "not supported"),
    ({"response_format": {"type": "json_object"}}, "response_format", "json_object"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}]},
     "messages[0].content[1]", "image content parts are not supported"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "messages", "last message must come from the user"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content",
     "must not be empty"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
     "messages[0].role", "tool messages are not supported"),
    ({"messages": []}, "messages", ""),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", ""),
    ({"model": ""}, "model", ""),
    ({"temperature": "hot"}, "temperature", ""),
    ({"stream": "yes"}, "stream", ""),
])
def test_bad_requests_are_400_naming_the_parameter(gw: Gateway, kwargs: dict[str, Any],
                                                   param: str, words: str) -> None:
    args: dict[str, Any] = {"model": "claude", "messages": user("hello")}
    args.update(kwargs)
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(**args)
    err = info.value
    assert err.status_code == 400 and err.type == "invalid_request_error"
    assert err.param == param
    assert words in err.message
    assert err.body["message"] in str(err)
    assert err.response.headers["x-request-id"]


def test_unknown_model_is_404_model_not_found(gw: Gateway) -> None:
    for stream in (False, True):  # before the stream starts: a plain HTTP error
        with pytest.raises(openai.NotFoundError) as info:
            gw.client().chat.completions.create(model="mistral-large", messages=user("x"),
                                                stream=stream)
        assert info.value.code == "model_not_found" and info.value.param == "model"
        assert info.value.type == "invalid_request_error"
        assert "'mistral-large' does not exist" in info.value.message
    with pytest.raises(openai.NotFoundError):
        gw.client().chat.completions.create(model="nobody/gpt-5", messages=user("x"))


# --------------------------------------------------------------------------- failed runs


def test_failed_run_is_502_and_not_retried(gw: Gateway) -> None:
    mark = marker()
    client = gw.client()  # default max_retries=2: the SDK would retry a plain 502
    assert client.max_retries == 2
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gemini",
                                       messages=user(fake(f"fail {mark}", error=500)))
    err = info.value
    assert err.status_code == 502 and err.code == "backend_failed"
    assert err.type == "server_error"
    assert "Internal error encountered" in err.message  # the backend's own message
    assert err.response.headers["x-should-retry"] == "false"
    assert len(gw.runs(mark)) == 1


def test_timed_out_run_is_504_and_not_retried(gw: Gateway) -> None:
    mark = marker()
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        gw.client().chat.completions.create(model="codex",
                                            messages=user(fake(f"hang {mark}", hang=True)))
    assert info.value.status_code == 504 and info.value.code == "backend_timeout"
    assert f"timed out after {CODEX_TIMEOUT}" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert time.monotonic() - started < CODEX_TIMEOUT + 10
    assert len(gw.runs(mark)) == 1


def test_failure_mid_stream_is_an_error_chunk(gw: Gateway) -> None:
    mark = marker()
    stream = gw.client().chat.completions.create(
        model="claude", messages=user(fake(f"die {mark}", die_midstream=True)), stream=True)
    texts = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts).startswith("Hello")  # what came before the failure was delivered
    assert info.value.body["code"] == "backend_failed"
    assert "exited with code 1" in info.value.message
    assert len(gw.runs(mark)) == 1


def test_failed_streaming_run_raw_frames(gw: Gateway) -> None:
    """After the error chunk the stream still ends properly with [DONE]."""
    resp = requests.post(gw.server.url("/openai/v1/chat/completions"), timeout=30, json={
        "model": "gemini", "stream": True,
        "messages": user(fake(f"fail {marker()}", error=500))})
    assert resp.status_code == 200
    frames = [f for f in resp.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    error = json.loads(frames[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and error["code"] == "backend_failed"
    assert "Internal error encountered" in error["message"]


# --------------------------------------------------------------------------- SSE hygiene


def test_sse_headers_and_keepalive_while_silent(gw: Gateway) -> None:
    with requests.post(gw.server.url("/openai/v1/chat/completions"), stream=True, timeout=30,
                       json={"model": "claude", "stream": True,
                             "messages": user(fake(f"quiet {marker()}", delay=1.8))}) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert resp.headers["x-request-id"]
        body = b"".join(resp.iter_content(chunk_size=None)).decode()
    frames = [f for f in body.split("\n\n") if f]
    keepalives = [i for i, f in enumerate(frames) if f == ": keep-alive"]
    first_text = next(i for i, f in enumerate(frames) if '"content":"Hello' in f)
    assert keepalives and keepalives[0] < first_text, frames
    assert frames[-1] == "data: [DONE]"


def test_client_going_away_kills_the_backend(gw: Gateway, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    resp = requests.post(gw.server.url("/openai/v1/chat/completions"), stream=True, timeout=30,
                         json={"model": "claude", "stream": True, "messages": user(fake(
                             f"hang {marker()}", hang=True, pidfile=str(pidfile)))})
    first = next(resp.iter_lines())
    assert first.startswith(b"data: ")
    assert wait_until(lambda: pids_alive(pidfile), 15)
    resp.close()
    assert wait_until(lambda: not pids_alive(pidfile), 15), pids_alive(pidfile)


def test_openapi_documents_the_routes(gw: Gateway) -> None:
    spec = requests.get(gw.server.url("/openapi.json"), timeout=10).json()
    post = spec["paths"]["/openai/v1/chat/completions"]["post"]
    assert post["operationId"] == "openaiChatCompletions"
    assert set(post["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert post["responses"]["502"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenAIError")
    assert "/openai/v1/models" in spec["paths"] and "/openai/v1/models/{model_id}" in spec["paths"]
