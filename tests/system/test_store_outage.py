"""A store outage: the gateway's PostgreSQL is stopped mid-test, then started again.

Every route that needs the store answers 503 ``store_unavailable`` with ``Retry-After``, in
its own API's error shape (native envelope; OpenAI ``error`` object, read by the official
SDK); what keeps no record (a stateless chat completion, the Anthropic Messages API) keeps
working; ``/health`` says ``degraded``; nothing hangs or dies, and once PostgreSQL is back
the same gateway serves the same sessions again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
import requests
from support.fakes import user
from support.procs import wait_until
from support.server_process import ServerProcess
from support.services import PostgresCluster, postgres_cluster

PROMPT = "/api/v1/prompt"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_url) -> Iterator[PostgresCluster]:
    # postgres_url only makes the collection install PostgreSQL; this module stops its own.
    with postgres_cluster(tmp_path_factory.mktemp("outage")) as pg:
        yield pg


@pytest.fixture(scope="module")
def gateway(cluster: PostgresCluster, server_factory) -> ServerProcess:
    return server_factory({"store": {"url": cluster.url, "pool_timeout_secs": 1,
                                     "connect_timeout_secs": 2}})


def _assert_unavailable(resp: requests.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "store_unavailable", resp.text
    assert int(resp.headers["Retry-After"]) >= 1
    assert "postgresql://" not in resp.text and "127.0.0.1" not in resp.text


def test_stopped_postgres_gives_503_in_every_dialect_then_recovers(
        cluster: PostgresCluster, gateway: ServerProcess) -> None:
    first = requests.post(gateway.url(PROMPT), timeout=30, json={
        "backend": "claude", "prompt": "before the outage"})
    assert first.status_code == 200, first.text
    sid = first.json()["data"]["session_id"]

    cluster.stop()
    try:
        started = time.monotonic()
        _assert_unavailable(requests.get(gateway.url("/api/v1/sessions"), timeout=30))
        _assert_unavailable(requests.post(gateway.url(PROMPT), timeout=30, json={
            "backend": "claude", "prompt": "during", "session_id": sid}))
        _assert_unavailable(requests.post(gateway.url(PROMPT), timeout=30, json={
            "backend": "claude", "prompt": "during", "output_format": "stream-json"}))
        _assert_unavailable(requests.post(gateway.url("/api/v1/jobs"), timeout=30, json={
            "backend": "claude", "prompt": "during"}))
        oa_client = openai.OpenAI(base_url=gateway.url("/openai/v1"), api_key="x",
                                  max_retries=0)
        for call in (lambda: oa_client.responses.retrieve("resp_0123456789abcdef"),
                     lambda: oa_client.responses.create(model="claude", input="hi")):
            with pytest.raises(openai.APIStatusError) as oa:
                call()
            assert oa.value.status_code == 503
            assert oa.value.code == "store_unavailable", oa.value.body
            assert oa.value.response.headers["Retry-After"]
        # What keeps no record keeps working: a stateless chat, the Messages API.
        chat = oa_client.chat.completions.create(model="claude", messages=user("hi"))
        assert chat.choices[0].message.content == "Hello from stub (turn 1)"
        reply = anthropic.Anthropic(base_url=gateway.url("/anthropic"), api_key="x",
                                    max_retries=0).messages.create(
            model="claude", max_tokens=8, messages=user("hi"))
        assert reply.content[0].text == "Hello from stub (turn 1)"
        health = requests.get(gateway.url("/health"), timeout=30)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "degraded"
        assert health.json()["session_store"]["available"] is False
        # each request waits at most store.pool_timeout_secs (1 s) for a connection
        assert time.monotonic() - started < 40
    finally:
        cluster.start()
    assert gateway.proc.poll() is None
    back = time.monotonic()
    # The pool reconnects on its own (with backoff); until then requests still get 503.
    assert wait_until(lambda: requests.get(gateway.url("/api/v1/sessions"), timeout=30
                                           ).status_code == 200, 30)
    print(f"store usable again {time.monotonic() - back:.1f} s after PostgreSQL was back")
    again = requests.post(gateway.url(PROMPT), timeout=30, json={
        "backend": "claude", "prompt": "after", "session_id": sid})
    assert again.status_code == 200, again.text
    assert again.json()["data"]["output"] == "Hello from stub (turn 2)"
    assert requests.get(gateway.url("/health"), timeout=10).json()["status"] == "ok"
