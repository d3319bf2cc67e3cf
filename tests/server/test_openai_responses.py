"""The OpenAI Responses API (/openai/v1/responses) driven by the official `openai` SDK.

A real `clinvk serve` runs with the fake CLIs: plain and streamed responses, a second turn
through `previous_response_id` that resumes the same backend session (seen in the fakes'
argv log), and 400s naming the unsupported field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from support.fakes import fake_runs, marker

REPLY_1 = "Hello from stub (turn 1)"


@pytest.fixture(scope="module")
def gw(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("responses-fakes") / "fake.log"
    server = server_factory({"server": {"stream_keepalive_secs": 1}},
                            extra_env={"FAKE_CLI_LOG": str(log)})
    client = openai.OpenAI(base_url=server.url("/openai/v1"), api_key="unused", timeout=30,
                           max_retries=0)
    yield client, log
    client.close()
    server.stop(timeout=10)


def test_plain_text_input(gw: Any) -> None:
    client, log = gw
    tag = marker()
    response = client.responses.create(model="claude", input=f"hi {tag}",
                                       instructions="Be brief.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "claude"
    assert response.id.startswith("resp_")
    assert response.output_text == REPLY_1
    [item] = response.output
    assert item.type == "message" and item.role == "assistant"
    assert item.content[0].type == "output_text"
    assert response.usage is not None
    assert response.usage.total_tokens == (response.usage.input_tokens
                                           + response.usage.output_tokens) > 0
    [run] = fake_runs(log, tag)
    assert run["cli"] == "claude"
    assert "Be brief." in " ".join(run["argv"])


def test_message_list_input(gw: Any) -> None:
    client, log = gw
    tag = marker()
    response = client.responses.create(model="codex", input=[
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "input_text", "text": f"hello {tag}"}]},
    ], store=False)
    assert response.output_text == REPLY_1
    assert fake_runs(log, tag)[0]["cli"] == "codex"


def test_stream_event_sequence(gw: Any) -> None:
    client, _ = gw
    events = list(client.responses.create(model="gemini", input=f"hi {marker()}",
                                          stream=True))
    kinds = [e.type for e in events]
    head = ["response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done",
            "response.output_item.done", "response.completed"]
    assert kinds[:4] == head and kinds[-4:] == tail
    deltas = kinds[4:-4]
    assert deltas and set(deltas) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == REPLY_1 == events[-4].text
    completed = events[-1].response
    assert completed.status == "completed" and completed.output_text == REPLY_1
    assert completed.id == events[0].response.id
    assert completed.usage.total_tokens > 0


def test_previous_response_id_resumes_the_backend_session(gw: Any) -> None:
    client, log = gw
    first_tag, second_tag = marker(), marker()
    first = client.responses.create(model="claude", input=f"one {first_tag}")
    second = client.responses.create(model="claude", input=f"two {second_tag}",
                                     previous_response_id=first.id)
    assert second.output_text == "Hello from stub (turn 2)"
    assert second.id != first.id
    [run] = fake_runs(log, second_tag)
    assert "--resume" in run["argv"]


def test_store_false_cannot_be_continued(gw: Any) -> None:
    client, _ = gw
    first = client.responses.create(model="claude", input=f"one {marker()}", store=False)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="claude", input="two", previous_response_id=first.id)
    assert info.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/x.png"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
     "input[0].type"),
])
def test_unsupported_inputs_are_400_naming_the_field(gw: Any, kwargs: dict[str, Any],
                                                     param: str, tmp_path: Path) -> None:
    client, _ = gw
    kwargs.setdefault("input", "hi")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude", **kwargs)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"
