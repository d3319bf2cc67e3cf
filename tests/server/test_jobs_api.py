"""The jobs API over a real gunicorn: submit, follow, cancel, ownership, restart recovery."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
import requests
from support.fakes import fake
from support.procs import pids_alive, wait_until
from support.server_process import start_server

SLOW = 'FAKE{"chunk_delay": 0.3}'


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"server": {"workers": 2, "jobs_max_queued": 3}})


def submit(server, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"backend": "claude", "prompt": prompt, **extra}
    resp = requests.post(server.url("/api/v1/jobs"), json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"].endswith("/api/v1/jobs/" + resp.json()["data"]["id"])
    return resp.json()["data"]


def job(server, job_id: str) -> dict[str, Any]:
    resp = requests.get(server.url(f"/api/v1/jobs/{job_id}"), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def sse_events(server, job_id: str, last_id: int | None = None, stop_after: int | None = None
               ) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    out: list[dict[str, Any]] = []
    with requests.get(server.url(f"/api/v1/jobs/{job_id}/events"), headers=headers,
                      stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        ident = None
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["sequence"] == ident
                out.append(event)
                if stop_after is not None and len(out) >= stop_after:
                    break
    return out


def test_a_job_runs_to_success_with_result_usage_and_a_closed_event_log(server):
    created = submit(server, "hello")
    assert created["status"] == "queued" and created["kind"] == "prompt"
    events = sse_events(server, created["id"])
    types = [e["type"] for e in events]
    assert types[-1] == "job_end" and events[-1]["content"]["status"] == "succeeded"
    assert "done" in types
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    final = job(server, created["id"])
    assert final["status"] == "succeeded"
    assert final["result"]["output"].startswith("Hello from stub")
    assert final["usage"]["output_tokens"] > 0 and final["session_id"]
    ndjson = requests.get(server.url(f"/api/v1/jobs/{created['id']}/events?after=2"),
                          headers={"Accept": "application/x-ndjson"}, timeout=10)
    lines = [json.loads(x) for x in ndjson.text.splitlines() if x.strip()]
    assert [e["sequence"] for e in lines] == [e["sequence"] for e in events[2:]]


def test_fifty_followers_reconnecting_at_random_points_see_the_exact_sequence(server):
    created = submit(server, f"long {SLOW}")
    reference: list[list[int]] = []
    failures: list[str] = []

    def follower(seed: int) -> None:
        rng = random.Random(seed)
        seen: list[int] = []
        try:
            while not seen or seen[-1] != final_seq[0]:
                part = sse_events(server, created["id"], seen[-1] if seen else None,
                                  stop_after=rng.randint(1, 3))
                seen.extend(e["sequence"] for e in part)
                if part and part[-1]["type"] == "job_end":
                    final_seq[0] = part[-1]["sequence"]
            reference.append(seen)
        except Exception as exc:  # reported below, with the follower's seed
            failures.append(f"{seed}: {exc!r}")

    final_seq = [-1]
    threads = [threading.Thread(target=follower, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    full = [e["sequence"] for e in sse_events(server, created["id"])]
    assert len(reference) == 50
    assert all(seen == full for seen in reference)


def test_cancel_from_a_second_worker_kills_the_process_group_and_keeps_output(
        server, tmp_path):
    pidfile = tmp_path / "pids"
    created = submit(server, fake("stall", pause_after_first=60, pidfile=str(pidfile)))
    assert wait_until(lambda: job(server, created["id"])["events"] >= 2, 15)
    assert pids_alive(pidfile)
    # Two workers: of several cancels some land on the worker not running the job.
    answers = [requests.post(server.url(f"/api/v1/jobs/{created['id']}/cancel"), timeout=10)
               for _ in range(4)]
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["data"]["status"] for a in answers} == {"cancelled"}
    assert not pids_alive(pidfile)
    final = job(server, created["id"])
    assert final["status"] == "cancelled"
    assert "Hello" in final["result"]["output"]  # partial output kept
    deleted = requests.delete(server.url(f"/api/v1/jobs/{created['id']}"), timeout=10)
    assert deleted.status_code == 200
    assert requests.get(server.url(f"/api/v1/jobs/{created['id']}"), timeout=10
                        ).status_code == 404


def test_a_running_job_cannot_be_deleted(server):
    created = submit(server, fake("stall", pause_after_first=60))
    assert wait_until(lambda: job(server, created["id"])["status"] == "running", 15)
    assert requests.delete(server.url(f"/api/v1/jobs/{created['id']}"), timeout=10
                           ).status_code == 409
    requests.post(server.url(f"/api/v1/jobs/{created['id']}/cancel"), timeout=10)


def test_lists_filter_and_page_with_a_cursor_and_unknown_jobs_are_404(server):
    for _ in range(3):
        submit(server, "page me")
    first = requests.get(server.url("/api/v1/jobs?limit=2"), timeout=10).json()["data"]
    assert len(first["jobs"]) == 2 and first["next_cursor"]
    second = requests.get(server.url(f"/api/v1/jobs?limit=2&cursor={first['next_cursor']}"),
                          timeout=10).json()["data"]
    assert not {j["id"] for j in first["jobs"]} & {j["id"] for j in second["jobs"]}
    bad = requests.get(server.url("/api/v1/jobs?status=nope"), timeout=10)
    assert bad.status_code == 400
    assert requests.get(server.url("/api/v1/jobs/job_nope"), timeout=10).status_code == 404


def test_an_unknown_kind_is_refused_naming_the_field(server):
    resp = requests.post(server.url("/api/v1/jobs"),
                         json={"backend": "claude", "prompt": "x", "kind": "nope"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["details"]["field"] == "kind"


def test_background_on_prompt_answers_202_with_a_job(server):
    resp = requests.post(server.url("/api/v1/prompt"),
                         json={"backend": "claude", "prompt": "bg", "background": True},
                         timeout=10)
    assert resp.status_code == 202, resp.text
    created = resp.json()["data"]
    assert resp.headers["Location"].endswith(created["id"])
    assert wait_until(lambda: job(server, created["id"])["status"] == "succeeded", 20)


def test_sigkill_with_a_queued_and_a_running_job_recovers_lost_and_runs_queued(tmp_path):
    config = {"server": {"jobs_threads": 1}}
    pidfile = tmp_path / "pids"
    srv = start_server(tmp_path / "srv", config)
    try:
        running = submit(srv, fake("stall", pause_after_first=60, pidfile=str(pidfile)))
        queued = submit(srv, "after restart")
        assert wait_until(lambda: job(srv, running["id"])["events"] >= 2, 15)
        before = sse_events(srv, running["id"], stop_after=job(srv, running["id"])["events"])
        assert job(srv, queued["id"])["status"] == "queued"
    finally:
        srv.stop(signal.SIGKILL)
    again = start_server(tmp_path / "srv", config)
    try:
        lost = job(again, running["id"])
        assert lost["status"] == "lost" and "not re-run" in lost["error"]
        after = sse_events(again, running["id"])
        assert after[:len(before)] == before  # nothing logged before the kill is missing
        assert after[-1]["type"] == "job_end"
        assert wait_until(lambda: job(again, queued["id"])["status"] == "succeeded", 20)
        assert wait_until(lambda: not pids_alive(pidfile), 10)
    finally:
        again.stop()


def test_the_jobs_cli_submits_follows_shows_and_cancels(server):
    env = {**server.env, "CLINVK_URL": server.base_url}
    cli = [sys.executable, "-m", "clinvk.cli", "jobs"]
    submitted = subprocess.run([*cli, "submit", "-b", "claude", "-f", "from the cli"],
                               env=env, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id, rest = submitted.stdout.split("\n", 1)
    assert "Hello from stub" in rest and f"[job {job_id}: succeeded]" in rest
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert job_id in listed.stdout
    shown = subprocess.run([*cli, "show", job_id], env=env, capture_output=True, text=True,
                           timeout=30)
    assert json.loads(shown.stdout)["status"] == "succeeded"
    cancelled = subprocess.run([*cli, "cancel", job_id], env=env, capture_output=True,
                               text=True, timeout=30)
    assert cancelled.stdout.strip() == "succeeded"  # finished: cancel leaves it as it is
    missing = subprocess.run([*cli, "show", "job_nope"], env=env, capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1 and "404" in missing.stderr
