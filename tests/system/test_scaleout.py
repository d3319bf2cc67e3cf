"""Scale-out on Celery: a gateway (two gunicorn workers) in front of two agent hosts.

One real redis-server is the broker and carries the run streams; a real PostgreSQL holds
the gateways' sessions and jobs (the shared store of a multi-host deployment); two
``clinvk worker`` processes stand for two hosts (own HOME, so each has its own CLI session
files, and own host name); the fakes log every run per host.
The last test stops redis (broker outage).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest
import requests
from support.agents import AgentHost
from support.fakes import fake, fake_runs, marker, user
from support.http import bound_session
from support.procs import pids_alive, wait_until
from support.server_process import ServerProcess
from support.services import redis_server
from support.stores import pg_database

# 5 x the 1 s heartbeat, as docs/deployment.md advises: at 3 x, a host stalled by the
# loaded CI machine was once declared lost mid-run.
LOST_AFTER = 5
PROMPT = "/api/v1/prompt"


@dataclass
class Topology:
    broker_url: str
    store_url: str
    hosts: dict[str, AgentHost]
    gateway: ServerProcess
    workdir: Path

    def host_of(self, word: str) -> str:
        """The host whose CLI ran the prompt containing ``word``."""
        found = {name for name, host in self.hosts.items() if fake_runs(host.runs_log, word)}
        assert len(found) == 1, f"{word} ran on {found}"
        return found.pop()

    def prompt(self, text: str, **body: object) -> requests.Response:
        return requests.post(self.gateway.url(PROMPT), timeout=60, json={
            "backend": "claude", "prompt": text, "workdir": str(self.workdir), **body})


@pytest.fixture(scope="module")
def topo(tmp_path_factory, server_factory, postgres_url) -> Iterator[Topology]:
    base = tmp_path_factory.mktemp("scaleout")
    workdir = base / "work"
    workdir.mkdir()
    store_url = pg_database(postgres_url, "scaleout")
    with redis_server(base) as url:
        timing = {"CLINVK_EXECUTION_LOST_AFTER_SECS": str(LOST_AFTER)}  # as the gateway's
        hosts = {name: AgentHost(base / name, name, url, concurrency=2, env=timing)
                 for name in ("h1", "h2")}
        try:
            for host in hosts.values():
                host.start()
            gateway = server_factory({
                "execution": {"mode": "celery", "broker_url": url, "heartbeat_secs": 1,
                              "lost_after_secs": LOST_AFTER},
                "server": {"metrics_enabled": True, "queue_timeout_secs": 10},
                "store": {"url": store_url},
            }, args=("--workers", "2"))
            yield Topology(url, store_url, hosts, gateway, workdir)
        finally:
            for host in hosts.values():
                host.stop()


def test_load_spreads_over_both_hosts_and_the_rest_waits_in_the_queue(topo: Topology,
                                                                      tmp_path: Path) -> None:
    """Six runs, four slots in all (two per host): four run, two wait in the queue.

    The runs are held behind a gate file until that state is seen, rather than for a fixed
    time: on a loaded machine the six requests may take longer to arrive than a fixed
    delay lasts, and the first runs would end before the last ones were queued."""
    words = [marker() for _ in range(6)]
    gate, pidfile = tmp_path / "gate", tmp_path / "pids"
    codes: list[int] = []

    def one(word: str) -> None:
        prompt = fake(f"spread {word}", wait_for=str(gate), pidfile=str(pidfile))
        codes.append(topo.prompt(prompt).status_code)

    def queued() -> int:
        health = requests.get(topo.gateway.url("/health"), timeout=10).json()
        return health["execution"]["queues"]["clinvk.backend.claude"]

    def four_run_two_wait() -> bool:
        return len(pids_alive(pidfile)) == 4 and queued() == 2

    threads = [threading.Thread(target=one, args=(w,)) for w in words]
    for thread in threads:
        thread.start()
    try:
        settled = wait_until(four_run_two_wait, 45, interval=0.2)
        # a busy host takes no more than its slots: the two stay in the queue meanwhile
        held = settled and not wait_until(lambda: not four_run_two_wait(), 1.0, interval=0.2)
        state = (len(pids_alive(pidfile)), queued())
    finally:
        gate.touch()
        for thread in threads:
            thread.join(60)
    assert settled and held, f"(running, queued) = {state}"
    assert codes == [200] * 6
    # two slots per host: four runs at once cannot all fit on one
    assert {topo.host_of(w) for w in words} == {"h1", "h2"}


def test_resume_goes_to_the_host_of_its_session(topo: Topology) -> None:
    word = marker()
    first = topo.prompt(f"remember {word}").json()["data"]
    home = topo.host_of(word)
    for turn in (2, 3):
        again = marker()
        body = topo.prompt(f"again {again}", session_id=first["session_id"]).json()
        assert body["data"]["output"] == f"Hello from stub (turn {turn})", body
        assert topo.host_of(again) == home  # the other host has no such CLI session


def test_streams_and_vendor_dialects_run_on_hosts(topo: Topology) -> None:
    word = marker()
    with requests.post(topo.gateway.url(PROMPT), stream=True, timeout=60, json={
            "backend": "claude", "prompt": f"stream {word}", "workdir": str(topo.workdir),
            "output_format": "stream-json"}) as resp:
        kinds = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and b'"done"' in kinds[-1], kinds
    topo.host_of(word)

    chat = openai.OpenAI(base_url=topo.gateway.url("/openai/v1"), api_key="x", max_retries=0)
    stream = chat.chat.completions.create(model="claude", messages=user(f"oa {marker()}"),
                                          stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from stub (turn 1)"

    msgs = anthropic.Anthropic(base_url=topo.gateway.url("/anthropic"), api_key="x",
                               max_retries=0)
    reply = msgs.messages.create(model="claude", max_tokens=64, messages=user(f"an {marker()}"))
    assert reply.content[0].text == "Hello from stub (turn 1)"

    resp = requests.post(topo.gateway.url("/api/v1/parallel"), timeout=60, json={"tasks": [
        {"backend": "claude", "prompt": fake("p1", reply="one"), "workdir": str(topo.workdir)},
        {"backend": "codex", "prompt": fake("p2", reply="two"), "workdir": str(topo.workdir)},
    ], "max_parallel": 2})
    assert [r["output"] for r in resp.json()["data"]["results"]] == ["one", "two"], resp.text


def test_health_and_metrics_show_hosts_and_queues(topo: Topology) -> None:
    execution = requests.get(topo.gateway.url("/health"), timeout=10).json()["execution"]
    assert {h["name"] for h in execution["hosts"]} == {"h1", "h2"}
    assert execution["broker"] == "ok"
    assert execution["queues"]["clinvk.backend.claude"] == 0
    assert "clinvk.host.h1" in execution["queues"]
    text = requests.get(topo.gateway.url("/metrics"), timeout=10).text
    assert "clinvk_agent_hosts 2.0" in text
    assert 'clinvk_queue_depth{queue="clinvk.backend.codex"} 0.0' in text


def _job(topo: Topology, prompt: str, gateway: ServerProcess | None = None) -> str:
    resp = requests.post((gateway or topo.gateway).url("/api/v1/jobs"), timeout=30, json={
        "backend": "claude", "prompt": prompt, "workdir": str(topo.workdir)})
    assert resp.status_code == 202, resp.text
    return resp.json()["data"]["id"]


def _job_status(topo: Topology, job_id: str) -> str:
    return requests.get(topo.gateway.url(f"/api/v1/jobs/{job_id}"), timeout=10
                        ).json()["data"]["status"]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_cancel_reaches_the_remote_process_group(topo: Topology, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    job_id = _job(topo, fake("hang on", hang=True, grandchild=True, pidfile=str(pidfile)))
    assert wait_until(lambda: len(pids_alive(pidfile)) == 2, 20), "the CLI never started"
    resp = requests.post(topo.gateway.url(f"/api/v1/jobs/{job_id}/cancel"), timeout=30)
    assert resp.json()["data"]["status"] == "cancelled", resp.text
    # the fake and its SIGTERM-ignoring grandchild: the whole group is gone
    assert wait_until(lambda: not pids_alive(pidfile), 10), pids_alive(pidfile)


def test_killed_worker_loses_its_job_and_its_sessions_fail_fast(topo: Topology,
                                                                tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    job_id = _job(topo, fake("hang on", hang=True, pidfile=str(pidfile)))
    assert wait_until(lambda: len(pids_alive(pidfile)) == 1, 20), "the CLI never started"
    cli_pid = pids_alive(pidfile)[0]
    victim = next(h for h in topo.hosts.values() if h.pid == _parent(cli_pid))
    word = marker()
    session = None
    for _ in range(6):  # a session held by the victim (new runs go to either host)
        body = topo.prompt(f"held {word}").json()["data"]
        if fake_runs(victim.runs_log, word):
            session = body["session_id"]
            break
        word = marker()
    assert session is not None, "no run landed on the victim host"

    victim.kill()
    killed_at = time.monotonic()
    assert wait_until(lambda: _job_status(topo, job_id) == "lost", LOST_AFTER + 10)
    assert time.monotonic() - killed_at < LOST_AFTER + 5
    started = time.monotonic()
    resp = topo.prompt("where are you", session_id=session)
    assert resp.status_code == 503 and resp.json()["code"] == "host_unavailable", resp.text
    assert time.monotonic() - started < 3
    # nothing else lost: the other host still takes new work
    assert topo.prompt(f"still here {marker()}").status_code == 200

    victim.start()  # the same host again: it kills what its dead predecessor left running
    assert wait_until(lambda: not pids_alive(pidfile), 10), f"orphan {cli_pid} survived"
    assert topo.prompt("back", session_id=session).json()["data"]["output"] == \
        "Hello from stub (turn 2)"


LEASE_TIMEOUT = 4


def test_a_frozen_gateways_session_takes_a_new_turn_within_the_lease_timeout(
        topo: Topology, server_factory, tmp_path: Path) -> None:
    """A gateway stopped dead mid-turn (SIGSTOP: its pid still exists, as a holder on
    another machine whose pid nobody here can judge) stops renewing its turn lease; the
    session takes a turn from another gateway within ``session.lease_timeout_secs``."""
    frozen = server_factory({
        "execution": {"mode": "celery", "broker_url": topo.broker_url, "heartbeat_secs": 1,
                      "lost_after_secs": LOST_AFTER},
        "session": {"lease_timeout_secs": LEASE_TIMEOUT},
        "store": {"url": topo.store_url},
    })
    sid = topo.prompt(f"leased {marker()}").json()["data"]["session_id"]
    pidfile = tmp_path / "pids"

    def long_turn() -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(frozen.url(PROMPT), timeout=LEASE_TIMEOUT * 4, json={
                "prompt": fake("long turn", hang=True, pidfile=str(pidfile)),
                "session_id": sid, "workdir": str(topo.workdir)})

    turn = threading.Thread(target=long_turn, daemon=True)
    turn.start()
    try:
        assert wait_until(lambda: len(pids_alive(pidfile)) == 1, 20), "the turn never started"
        time.sleep(LEASE_TIMEOUT)  # renewed meanwhile: a long turn keeps its session
        assert topo.prompt("meanwhile", session_id=sid).status_code == 409
        os.killpg(frozen.proc.pid, signal.SIGSTOP)  # master and both workers
        frozen_at = time.monotonic()
        codes: list[int] = []

        def accepted() -> bool:
            codes.append(topo.prompt(f"after {marker()}", session_id=sid).status_code)
            return codes[-1] == 200

        assert wait_until(accepted, LEASE_TIMEOUT + 10, interval=0.5), codes
        waited = time.monotonic() - frozen_at
        assert waited < LEASE_TIMEOUT + 3, (waited, codes)
        assert set(codes[:-1]) <= {409}, codes
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(frozen.proc.pid, signal.SIGKILL)
        turn.join(10)


def test_rate_limits_hold_across_two_gateways(topo: Topology, server_factory) -> None:
    burst = 8
    limited = {
        "execution": {"mode": "celery", "broker_url": topo.broker_url},
        "server": {"rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": burst,
                   "rate_limit_storage_uri": topo.broker_url + "/1"},
        "store": {"url": topo.store_url},
    }
    gateways = [server_factory(limited), server_factory(limited)]
    try:
        client = bound_session("127.0.0.61")  # one client, its own window
        codes = Counter(client.get(gateways[i % 2].url("/api/v1/sessions"), timeout=10
                                   ).status_code for i in range(2 * burst))
        assert codes == {200: burst, 429: burst}, codes  # one window, not one per gateway
        # The gateways share one store: a session made through one resumes through another.
        word = marker()
        sid = topo.prompt(f"shared {word}").json()["data"]["session_id"]
        other = bound_session("127.0.0.62")
        seen = other.get(gateways[1].url(f"/api/v1/sessions/{sid}"), timeout=10)
        assert seen.status_code == 200 and seen.json()["data"]["turn_count"] == 1
        again = other.post(gateways[0].url(PROMPT), timeout=60, json={
            "backend": "claude", "prompt": f"again {word}x", "session_id": sid,
            "workdir": str(topo.workdir)})
        assert again.json()["data"]["output"] == "Hello from stub (turn 2)", again.text
        assert topo.host_of(f"{word}x") == topo.host_of(f"shared {word}")
    finally:
        for gateway in gateways:
            gateway.stop(timeout=10)


def _gateway(topo: Topology, server_factory) -> ServerProcess:
    """Another gateway of the deployment (two workers): same broker, same store."""
    return server_factory({
        "execution": {"mode": "celery", "broker_url": topo.broker_url, "heartbeat_secs": 1,
                      "lost_after_secs": LOST_AFTER},
        "server": {"queue_timeout_secs": 30},
        "store": {"url": topo.store_url},
    }, args=("--workers", "2"))


def _sigkill(gateway: ServerProcess) -> None:
    """The gateway dies at once: master and both workers, nothing cleaned up."""
    os.killpg(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait(10)


def _events(gateway: ServerProcess, job_id: str) -> list[dict]:
    resp = requests.get(gateway.url(f"/api/v1/jobs/{job_id}/events"), timeout=30,
                        headers={"Accept": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _runs(topo: Topology, word: str) -> int:
    return sum(len(fake_runs(h.runs_log, word)) for h in topo.hosts.values())


def test_a_job_started_when_its_gateway_died_ends_lost_and_is_not_rerun(
        topo: Topology, server_factory, tmp_path: Path) -> None:
    pidfile, word = tmp_path / "pids", marker()
    first = _gateway(topo, server_factory)
    job_id = _job(topo, fake(f"started {word}", hang=True, pidfile=str(pidfile)), first)
    assert wait_until(lambda: len(pids_alive(pidfile)) == 1, 20), "the CLI never started"
    assert wait_until(lambda: _job_status(topo, job_id) == "running", 5)
    _sigkill(first)
    second = _gateway(topo, server_factory)  # its start judges the jobs of dead gateways
    assert wait_until(lambda: _job_status(topo, job_id) == "lost", 10)
    # nobody reads the run any more: its host stops the CLI within the reader lease
    assert wait_until(lambda: not pids_alive(pidfile), LOST_AFTER + 5), pids_alive(pidfile)
    assert _events(second, job_id)[-1]["content"]["status"] == "lost"
    assert _runs(topo, word) == 1
    second.stop(timeout=10)


BUSY_SECS = LOST_AFTER + 4  # the hosts stay busy until the dead gateway's reader lease is gone


def test_a_job_queued_when_its_gateway_died_runs_once_under_the_next_gateway(
        topo: Topology, server_factory, tmp_path: Path) -> None:
    """Every host slot is busy; the job waits in the queue; its gateway is SIGKILLed. The
    next gateway takes the job over: it runs once, and its whole event log is read back
    through the new gateway, in order, each event once, like a job nobody interrupted."""
    reference = _job(topo, fake(f"reference {marker()}"))
    pidfile, word = tmp_path / "busy", marker()
    busy = [threading.Thread(target=topo.prompt, daemon=True, args=(
        fake(f"busy {marker()}", delay=BUSY_SECS, pidfile=str(pidfile)),)) for _ in range(4)]
    for thread in busy:
        thread.start()
    assert wait_until(lambda: len(pids_alive(pidfile)) == 4, 20), "the hosts are not all busy"
    first = _gateway(topo, server_factory)
    job_id = _job(topo, fake(f"survivor {word}"), first)

    def queued_runs() -> int:
        health = requests.get(topo.gateway.url("/health"), timeout=10).json()
        return health["execution"]["queues"]["clinvk.backend.claude"]

    assert wait_until(lambda: queued_runs() >= 1, 10), "the job's run never reached the queue"
    assert _job_status(topo, job_id) == "queued"
    # A job cancelled while it waits for a host is withdrawn: no host ever starts it.
    cancelled_word = marker()
    cancelled = _job(topo, fake(f"cancelled {cancelled_word}"))
    assert wait_until(lambda: queued_runs() >= 2, 10)
    resp = requests.post(topo.gateway.url(f"/api/v1/jobs/{cancelled}/cancel"), timeout=30)
    assert resp.json()["data"]["status"] == "cancelled", resp.text
    _sigkill(first)
    second = _gateway(topo, server_factory)
    assert wait_until(lambda: _job_status(topo, job_id) in ("succeeded", "failed", "lost"),
                      BUSY_SECS + 30)
    final = requests.get(second.url(f"/api/v1/jobs/{job_id}"), timeout=10).json()["data"]
    assert final["status"] == "succeeded", (final, second.log()[-3000:])
    events = _events(second, job_id)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events] == [e["type"] for e in _events(topo.gateway, reference)]
    assert _runs(topo, word) == 1
    assert wait_until(lambda: queued_runs() == 0, 10)
    assert _runs(topo, cancelled_word) == 0
    assert _events(topo.gateway, cancelled)[-1]["content"]["status"] == "cancelled"
    for thread in busy:
        thread.join(BUSY_SECS + 10)
    second.stop(timeout=10)


def test_broker_outage_gives_503_in_every_dialect(topo: Topology) -> None:
    import redis

    redis.Redis.from_url(topo.broker_url).shutdown(nosave=True)
    started = time.monotonic()
    native = topo.prompt("anyone")
    assert native.status_code == 503 and native.json()["code"] == "broker_unavailable"
    with pytest.raises(openai.APIStatusError) as oa:
        openai.OpenAI(base_url=topo.gateway.url("/openai/v1"), api_key="x", max_retries=0
                      ).chat.completions.create(model="claude", messages=user("hi"))
    assert oa.value.status_code == 503
    with pytest.raises(anthropic.APIStatusError) as an:
        anthropic.Anthropic(base_url=topo.gateway.url("/anthropic"), api_key="x", max_retries=0
                            ).messages.create(model="claude", max_tokens=8, messages=user("hi"))
    assert an.value.status_code == 503
    assert time.monotonic() - started < 20  # no request hangs on the dead broker
    health = requests.get(topo.gateway.url("/health"), timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["execution"]["broker"] == "unreachable"
    assert topo.gateway.proc.poll() is None
