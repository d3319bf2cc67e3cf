"""Stored and background Responses API turns with the official `openai` SDK, real gunicorn.

Background turns run as jobs: retrieve polls them, cancel kills the process group (from
either of two workers), streams replay the job log and resume with `starting_after`.
Foreground stored turns can be retrieved, listed and deleted. Every stored response
belongs to the API key that made it; an admin key sees all.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from support.fakes import fake, fake_runs, marker
from support.procs import pids_alive, wait_until

from clinvk.core.keys import key_id

KEY_A = "sk-resp-owner-a-0123456789abcdef"
KEY_B = "sk-resp-owner-b-0123456789abcdef"
ADMIN = "sk-resp-admin-0123456789abcdef00"


@pytest.fixture(scope="module")
def gw(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("stored-fakes") / "fake.log"
    server = server_factory({"server": {"workers": 2, "stream_keepalive_secs": 1,
                                        "admin_key_ids": [key_id(ADMIN)]}},
                            extra_env={"FAKE_CLI_LOG": str(log),
                                       "CLINVK_API_KEYS": f"{KEY_A},{KEY_B},{ADMIN}"})
    clients = {name: openai.OpenAI(base_url=server.url("/openai/v1"), api_key=key,
                                   timeout=30, max_retries=0)
               for name, key in (("a", KEY_A), ("b", KEY_B), ("admin", ADMIN))}
    yield clients, log
    for client in clients.values():
        client.close()


def settle(client: openai.OpenAI, response_id: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_background_turn_is_queued_then_polled_to_completion(gw: Any) -> None:
    clients, log = gw
    tag = marker()
    created = clients["a"].responses.create(model="claude", input=f"bg {tag}",
                                            instructions="Be brief.", background=True,
                                            metadata={"ticket": "7"})
    assert created.status == "queued" and created.background is True
    assert created.id.startswith("resp_j") and created.output == []
    seen = {created.status}
    deadline = time.monotonic() + 20
    while (current := clients["a"].responses.retrieve(created.id)).status != "completed":
        seen.add(current.status)
        assert current.status in ("queued", "in_progress") and time.monotonic() < deadline
        time.sleep(0.05)
    assert current.output_text == "Hello from stub (turn 1)"
    assert current.usage is not None and current.usage.output_tokens > 0
    assert current.metadata == {"ticket": "7"} and current.instructions == "Be brief."
    assert current.created_at == created.created_at and current.model == "claude"
    [run] = fake_runs(log, tag)
    assert "Be brief." in " ".join(run["argv"])
    items = clients["a"].responses.input_items.list(created.id)
    assert [(i.role, i.content[0].text) for i in items.data] == [("user", f"bg {tag}")]


def test_another_key_gets_404_and_the_admin_sees_it(gw: Any) -> None:
    clients, _ = gw
    created = clients["a"].responses.create(model="codex", input="mine", background=True)
    for call in (lambda: clients["b"].responses.retrieve(created.id),
                 lambda: clients["b"].responses.cancel(created.id),
                 lambda: clients["b"].responses.input_items.list(created.id),
                 lambda: clients["b"].responses.delete(created.id),
                 lambda: clients["b"].responses.create(model="codex", input="x",
                                                       previous_response_id=created.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert settle(clients["admin"], created.id).status == "completed"
    assert settle(clients["a"], created.id).status == "completed"


def test_cancel_from_either_worker_kills_the_process_group(gw: Any, tmp_path) -> None:
    clients, _ = gw
    pidfile = tmp_path / "pids"
    created = clients["a"].responses.create(
        model="claude", background=True,
        input=fake("stall", pause_after_first=60, pidfile=str(pidfile)))
    assert wait_until(lambda: clients["a"].responses.retrieve(created.id).status
                      == "in_progress" and pids_alive(pidfile), 15)
    answers = [clients["a"].responses.cancel(created.id) for _ in range(3)]  # idempotent
    assert {a.status for a in answers} == {"cancelled"}
    assert not pids_alive(pidfile)
    final = clients["a"].responses.retrieve(created.id)
    assert final.status == "cancelled" and "Hello" in final.output_text  # partial text kept
    clients["a"].responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        clients["a"].responses.retrieve(created.id)


def test_a_background_stream_resumes_after_the_last_sequence_number(gw: Any) -> None:
    clients, _ = gw
    stream = clients["a"].responses.create(model="gemini", background=True, stream=True,
                                           input=fake("story", chunk_delay=0.05))
    head = []
    for event in stream:
        head.append(event)
        if event.type == "response.output_text.delta":
            break
    stream.close()  # leaving does not cancel a background turn
    response_id = head[0].response.id
    assert [e.type for e in head[:2]] == ["response.created", "response.queued"]
    rest = list(clients["a"].responses.retrieve(response_id, stream=True,
                                                starting_after=head[-1].sequence_number))
    whole = list(clients["a"].responses.retrieve(response_id, stream=True))
    joined = head + rest
    assert [e.sequence_number for e in joined] == list(range(len(joined)))
    assert [e.model_dump() for e in joined] == [e.model_dump() for e in whole]
    assert joined[-1].type == "response.completed"
    text = "".join(e.delta for e in joined if e.type == "response.output_text.delta")
    assert text == joined[-1].response.output_text == whole[-1].response.output_text


def test_foreground_stored_turns_are_retrieved_listed_continued_and_deleted(gw: Any) -> None:
    clients, log = gw
    first = clients["a"].responses.create(model="claude", input=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": [{"type": "input_text", "text": "three"}]}])
    again = clients["a"].responses.retrieve(first.id)
    assert again.model_dump() == first.model_dump()
    items = clients["a"].responses.input_items.list(first.id, limit=2)
    assert [i.content[0].text for i in items.data] == ["three", "two"] and items.has_more
    everything = list(clients["a"].responses.input_items.list(first.id, order="asc", limit=2))
    assert [i.content[0].text for i in everything] == ["one", "two", "three"]
    streamed = list(clients["a"].responses.create(model="claude", input="s", stream=True))
    assert clients["a"].responses.retrieve(streamed[-1].response.id).output_text == \
        streamed[-1].response.output_text
    with pytest.raises(openai.BadRequestError) as info:
        clients["a"].responses.cancel(first.id)
    assert info.value.body["param"] == "response_id"
    with pytest.raises(openai.BadRequestError):
        clients["a"].responses.retrieve(first.id, stream=True)
    clients["a"].responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        clients["a"].responses.retrieve(first.id)
    ephemeral = clients["a"].responses.create(model="claude", input="e", store=False)
    with pytest.raises(openai.NotFoundError):
        clients["a"].responses.retrieve(ephemeral.id)


def test_a_background_turn_is_continued_with_previous_response_id(gw: Any) -> None:
    clients, log = gw
    first = clients["a"].responses.create(model="claude", input="first", background=True)
    assert settle(clients["a"], first.id).status == "completed"
    tag = marker()
    second = clients["a"].responses.create(model="claude", input=f"second {tag}",
                                           previous_response_id=first.id)
    assert second.output_text == "Hello from stub (turn 2)"
    [run] = fake_runs(log, tag)
    assert "--resume" in run["argv"]


def test_background_cannot_be_ephemeral(gw: Any) -> None:
    clients, _ = gw
    with pytest.raises(openai.BadRequestError) as info:
        clients["a"].responses.create(model="claude", input="x", background=True, store=False)
    assert info.value.body["param"] == "store"
