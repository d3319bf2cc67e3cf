"""Where the engine sends a run in ``execution.mode: celery``: host records and session
affinity in a real Redis, read by the real placement (no worker needed to place)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.engine import make_engine, request

from clinvk.core.errors import BackendUnavailable, BrokerUnavailable, HostUnavailable
from clinvk.core.remote.channel import connect
from clinvk.core.remote.hosts import HostDirectory, HostInfo
from clinvk.core.remote.names import Names


@pytest.fixture
def celery_engine(env: Path, redis_url: str):
    prefix = f"t{uuid.uuid4().hex[:8]}"  # a deployment of its own in the shared redis

    def build(**overrides: object):
        return make_engine(env, server_mode=True, **{
            "execution.mode": "celery", "execution.broker_url": redis_url,
            "execution.queue_prefix": prefix, **overrides})

    directory = HostDirectory(connect(redis_url), Names(prefix), lost_after=30)
    return build, directory, Names(prefix)


def test_new_runs_go_to_a_backend_queue_only_hosts_serving_it_consume(env, celery_engine):
    build, hosts, names = celery_engine
    engine = build()
    hosts.beat(HostInfo("h1", ("claude",), 2))
    hosts.beat(HostInfo("h2", ("claude", "codex"), 2))
    assert engine.prepare(request(env, "codex")).placement.queue == names.backend_queue("codex")
    with pytest.raises(BackendUnavailable, match="no agent host serves backend 'gemini'"):
        engine.prepare(request(env, "gemini"))
    assert engine.prepare(request(env, "gemini", dry_run=True)).placement is None


def test_a_resume_goes_to_its_hosts_queue_and_fails_fast_when_it_is_gone(env, celery_engine):
    build, hosts, names = celery_engine
    engine = build()
    hosts.beat(HostInfo("h1", ("claude",), 2))
    session = engine.store.create(backend="claude", working_dir=str(env / "work"),
                                  backend_session_id="5b1c9a7e-0000-4000-8000-000000000001")
    hosts.remember(session.id, "h1")
    prepared = engine.prepare(request(env, "claude", session_id=session.id))
    assert prepared.placement.queue == names.host_queue("h1")
    assert "--resume" in prepared.invocation.argv

    hosts.leave("h1")
    hosts.beat(HostInfo("h2", ("claude",), 2))
    with pytest.raises(HostUnavailable, match="held by agent host 'h1', which is gone"):
        engine.prepare(request(env, "claude", session_id=session.id))


def test_fallback_starts_a_new_backend_session_elsewhere_and_says_so(env, celery_engine):
    build, hosts, names = celery_engine
    engine = build(**{"execution.host_fallback": "new_session"})
    hosts.beat(HostInfo("h2", ("claude",), 2))
    session = engine.store.create(backend="claude", working_dir=str(env / "work"),
                                  backend_session_id="5b1c9a7e-0000-4000-8000-000000000002")
    hosts.remember(session.id, "h1")  # h1 has no record: gone
    prepared = engine.prepare(request(env, "claude", session_id=session.id))
    assert prepared.placement.queue == names.backend_queue("claude")
    assert "--resume" not in prepared.invocation.argv
    assert "agent host 'h1'" in prepared.placement.notice


def test_an_unreachable_broker_is_a_clear_error_before_anything_starts(env, celery_engine):
    build, _hosts, _names = celery_engine
    engine = build(**{"execution.broker_url": "redis://127.0.0.1:1/0"})
    with pytest.raises(BrokerUnavailable, match="cannot be reached"):
        engine.prepare(request(env, "claude"))


def test_queue_depth_counts_waiting_messages(redis_url: str) -> None:
    client = connect(redis_url)
    queue = f"q{uuid.uuid4().hex[:8]}"
    client.lpush(queue, "a", "b")
    assert HostDirectory(client, Names(), 5).queue_depths([queue, queue + "x"]) == \
        {queue: 2, queue + "x": 0}
