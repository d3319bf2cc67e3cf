"""The stub model APIs themselves, over real HTTP (no CLI needed, so these always run)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from stubs import AnthropicStub, GeminiStub, OpenAIResponsesStub, decide
from stubs.base import Item


def call(url: str, body: dict | None = None, method: str = "POST",
         headers: dict | None = None) -> tuple[int, str, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines()
            if line.startswith("data: ")]


def test_decide_counts_prompts_and_follows_tool_results():
    assert decide([Item("prompt", "hi")]).text == "Hello from stub (turn 1)"
    history = [Item("prompt", "hi"), Item("assistant", "x"), Item("prompt", "RUN_TOOL")]
    reply = decide(history)
    assert reply.kind == "tool_call" and reply.command == "echo hello-from-tool"
    assert reply.turn == 2
    after = decide([*history, Item("tool_call", "{}"), Item("tool_result", "out")])
    assert after.text == "Tool said: out (turn 2)"
    assert decide([Item("prompt", "FAIL_500")]).status == 500
    assert decide([Item("prompt", "RUN_TOOL")], can_run_shell=False).kind == "text"
    # Only the latest prompt's keyword counts: an old failure does not repeat on resume.
    assert decide([Item("prompt", "FAIL_401"), Item("prompt", "hi")]).kind == "text"


def test_anthropic_stub_streams_counts_turns_and_records():
    with AnthropicStub() as stub:
        status, _, _ = call(stub.url + "/", method="HEAD")
        assert status == 200
        messages = [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx"},
                                         {"type": "text", "text": "say hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "earlier"}]},
            {"role": "user", "content": "again"},
        ]
        status, text, headers = call(stub.url + "/v1/messages?beta=true",
                                     {"model": "m", "stream": True, "messages": messages})
        assert status == 200 and headers["content-type"] == "text/event-stream"
        events = sse_events(text)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        deltas = "".join(e["delta"].get("text", "") for e in events
                         if e["type"] == "content_block_delta")
        assert deltas == "Hello from stub (turn 2)"
        status, text, _ = call(stub.url + "/v1/messages",
                               {"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert json.loads(text)["content"][0]["text"] == "Hello from stub (turn 1)"
        tools = [{"name": "Bash"}]
        status, text, _ = call(stub.url + "/v1/messages", {
            "model": "m", "tools": tools,
            "messages": [{"role": "user", "content": "RUN_TOOL"}]})
        block = json.loads(text)["content"][1]
        assert block["type"] == "tool_use" and block["input"]["command"] == "echo hello-from-tool"
        status, text, _ = call(stub.url + "/v1/messages", {
            "model": "m", "stream": True,
            "messages": [{"role": "user", "content": "FAIL_401"}]})
        assert status == 401 and json.loads(text)["error"]["type"] == "authentication_error"
        assert [r.route for r in stub.requests][:2] == ["HEAD /", "POST /v1/messages"]
        assert stub.replies()[-1] == "error 401"
        assert stub.requests[1].headers["content-type"] == "application/json"
    assert not stub.running


def test_openai_responses_stub_streams_and_calls_the_shell_tool():
    with OpenAIResponsesStub() as stub:
        inputs = [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "<environment_context>x"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "RUN_TOOL"}]},
        ]
        tools = [{"type": "function", "name": "exec_command",
                  "parameters": {"properties": {"cmd": {}}}}]
        status, text, _ = call(stub.url + "/v1/responses",
                               {"model": "m", "stream": True, "input": inputs, "tools": tools})
        events = sse_events(text)
        assert events[0]["type"] == "response.created"
        assert events[-1]["type"] == "response.completed"
        call_item = events[-1]["response"]["output"][0]
        assert call_item["type"] == "function_call" and call_item["name"] == "exec_command"
        assert json.loads(call_item["arguments"]) == {"cmd": "echo hello-from-tool"}
        inputs += [call_item, {"type": "function_call_output", "call_id": call_item["call_id"],
                               "output": "Exit code: 0\nOutput:\nhello-from-tool\n"}]
        status, text, _ = call(stub.url + "/v1/responses",
                               {"model": "m", "stream": True, "input": inputs, "tools": tools})
        deltas = "".join(e["delta"] for e in sse_events(text)
                         if e["type"] == "response.output_text.delta")
        assert deltas == "Tool said: hello-from-tool (turn 1)"
        stub.force_status = 500
        status, text, _ = call(stub.url + "/v1/responses", {"model": "m", "input": inputs})
        assert status == 500 and json.loads(text)["error"]["type"] == "server_error"
        assert stub.replies() == ["tool_call 'echo hello-from-tool' (turn 1)",
                                  "text 'Tool said: hello-from-tool (turn 1)'", "error 500"]


@pytest.mark.parametrize("method", ["streamGenerateContent", "generateContent"])
def test_gemini_stub_answers_router_and_stream(method):
    with GeminiStub() as stub:
        base = f"{stub.url}/v1beta/models/gemini-x:{method}"
        schema = {"type": "OBJECT", "properties": {
            "complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}}}
        if method == "generateContent":
            status, text, _ = call(base, {
                "contents": [{"role": "user", "parts": [{"text": "route me"}]}],
                "generationConfig": {"responseMimeType": "application/json",
                                     "responseJsonSchema": schema}})
            answer = json.loads(json.loads(text)["candidates"][0]["content"]["parts"][0]["text"])
            assert answer["complexity_score"] == 1
            return
        contents = [
            {"role": "user", "parts": [{"text": "<session_context>x"}, {"text": "hi"}]},
            {"role": "model", "parts": [{"text": "Hello from stub (turn 1)"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ]
        status, text, _ = call(base + "?alt=sse", {"contents": contents})
        chunks = sse_events(text)
        joined = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
        assert joined == "Hello from stub (turn 2)"
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
        status, text, _ = call(base + "?alt=sse", {
            "contents": [{"role": "user", "parts": [{"text": "FAIL_401"}]}]})
        assert status == 401 and json.loads(text)["error"]["status"] == "UNAUTHENTICATED"
        status, _, _ = call(stub.url + "/v1beta/nothing", {})
        assert status == 404
        assert [r.status for r in stub.requests] == [200, 401, 404]
