"""parallel, chain and compare as job kinds, over a real gunicorn with the fake CLIs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import requests
from support.fakes import fake
from support.procs import pids_alive, wait_until


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"server": {"workers": 2}})


def submitted(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 202, resp.text
    created = resp.json()["data"]
    assert resp.headers["Location"].endswith("/api/v1/jobs/" + created["id"])
    assert created["status"] == "queued"
    return created


def submit(server, body: dict[str, Any]) -> dict[str, Any]:
    return submitted(requests.post(server.url("/api/v1/jobs"), json=body, timeout=10))


def job(server, job_id: str) -> dict[str, Any]:
    resp = requests.get(server.url(f"/api/v1/jobs/{job_id}"), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def finished(server, job_id: str, timeout: float = 30) -> dict[str, Any]:
    assert wait_until(lambda: job(server, job_id)["finished_at"] is not None, timeout)
    return job(server, job_id)


def events(server, job_id: str) -> list[dict[str, Any]]:
    resp = requests.get(server.url(f"/api/v1/jobs/{job_id}/events"),
                        headers={"Accept": "application/x-ndjson"}, timeout=30)
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def job_runs(server) -> int:
    """Ledger rows with origin job so far."""
    groups = requests.get(server.url("/api/v1/usage?group_by=origin"), timeout=10
                          ).json()["data"]["groups"]
    return sum(g["runs"] for g in groups if g["origin"] == "job")


def without_timings(body: dict[str, Any]) -> dict[str, Any]:
    drop = {"total_duration_ms", "duration_ms", "backend_session_id", "token_usage"}
    return json.loads(json.dumps(body), object_hook=lambda d: {
        k: v for k, v in d.items() if k not in drop})


def test_a_parallel_job_has_the_route_body_tagged_events_and_a_ledger_row_per_task(server):
    body = {"tasks": [{"backend": "claude", "prompt": "one"},
                      {"backend": "codex", "prompt": "two"}]}
    runs_before = job_runs(server)
    created = submit(server, {"kind": "parallel", **body})
    assert created["kind"] == "parallel" and created["backend"] is None
    final = finished(server, created["id"])
    assert final["status"] == "succeeded", final
    sync = requests.post(server.url("/api/v1/parallel"), json=body, timeout=60).json()["data"]
    assert without_timings(final["result"]) == without_timings(sync)
    assert final["usage"]["output_tokens"] == sum(
        r["token_usage"]["output_tokens"] for r in final["result"]["results"])
    log = events(server, created["id"])
    assert [e["sequence"] for e in log] == list(range(1, len(log) + 1))
    for task, backend in ((0, "claude"), (1, "codex")):
        mine = [e for e in log if e.get("task") == task]
        assert {e["backend"] for e in mine} == {backend}
        assert "done" in [e["type"] for e in mine]
        assert mine[-1]["type"] == "task_end" and mine[-1]["content"]["status"] == "ok"
    assert log[-1]["type"] == "job_end"
    assert wait_until(lambda: job_runs(server) - runs_before == 2, 10)  # the sync run: api


def test_background_chain_passes_previous_and_tags_events_with_their_step(server):
    resp = requests.post(server.url("/api/v1/chain"), timeout=10, json={
        "background": True,
        "steps": [{"backend": "claude", "prompt": fake("first", reply="alpha"), "name": "a"},
                  {"backend": "gemini", "prompt": "got {{previous}}", "name": "b"}]})
    created = submitted(resp)
    assert created["kind"] == "chain"
    final = finished(server, created["id"])
    assert final["status"] == "succeeded", final
    result = final["result"]
    assert result["total_steps"] == 2 and result["failed_step"] is None
    assert [r["step"] for r in result["results"]] == [1, 2]
    assert [r["name"] for r in result["results"]] == ["a", "b"]
    log = events(server, created["id"])
    assert {e["step"] for e in log if e.get("task") == 1} == {2}
    assert any(e.get("step") == 1 and e["type"] == "done" for e in log)


def test_a_compare_job_with_a_failing_backend_fails_and_keeps_every_result(server):
    created = submit(server, {"kind": "compare", "backends": ["claude", "codex"],
                              "prompt": fake("compare me", error=500)})
    final = finished(server, created["id"])
    assert final["status"] == "failed"
    assert "sub-runs did not succeed" in final["error"]
    assert final["result"]["backends"] == ["claude", "codex"]
    assert [r["status"] for r in final["result"]["results"]] == ["failed", "failed"]


def test_cancelling_a_parallel_job_kills_every_process_group_and_keeps_partial_output(
        server, tmp_path):
    pidfile = tmp_path / "pids"
    stall = fake("stall", pause_after_first=60, pidfile=str(pidfile))
    created = submit(server, {"kind": "parallel", "tasks": [
        {"backend": "claude", "prompt": stall}, {"backend": "claude", "prompt": stall}]})
    assert wait_until(lambda: len(pids_alive(pidfile)) == 2
                      and job(server, created["id"])["events"] >= 4, 20), (
        job(server, created["id"]), pids_alive(pidfile))
    answer = requests.post(server.url(f"/api/v1/jobs/{created['id']}/cancel"), timeout=10)
    assert answer.status_code == 200
    assert wait_until(lambda: not pids_alive(pidfile), 2)
    final = finished(server, created["id"], 10)
    assert final["status"] == "cancelled"
    results = final["result"]["results"]
    assert [r["status"] for r in results] == ["cancelled", "cancelled"]
    assert all("Hello" in r["output"] for r in results)  # partial output kept
    messages = {e["task"] for e in events(server, created["id"]) if e["type"] == "message"}
    assert messages == {0, 1}


def test_a_cancelled_chain_never_starts_its_next_step(server, tmp_path):
    pidfile = tmp_path / "pids"
    created = submit(server, {"kind": "chain", "steps": [
        {"backend": "claude", "prompt": fake("stall", pause_after_first=60,
                                             pidfile=str(pidfile))},
        {"backend": "claude", "prompt": "never {{previous}}"}]})
    assert wait_until(lambda: pids_alive(pidfile), 20)
    requests.post(server.url(f"/api/v1/jobs/{created['id']}/cancel"), timeout=10)
    assert wait_until(lambda: not pids_alive(pidfile), 2)
    final = finished(server, created["id"], 10)
    assert final["status"] == "cancelled"
    assert [r["status"] for r in final["result"]["results"]] == ["cancelled", "cancelled"]
    assert len(pidfile.read_text().split()) == 1  # step 2 never ran


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "parallel", "tasks": [{"backend": "nope", "prompt": "x"}]}, "tasks[0].backend"),
    ({"kind": "parallel", "tasks": []}, "tasks"),
    ({"kind": "chain", "steps": [{"backend": "claude"}]}, "steps[0].prompt"),
    ({"kind": "chain", "steps": [{"backend": "claude", "prompt": "{{session}}"}]},
     "steps[0].prompt"),
    ({"kind": "compare", "backends": ["claude"], "prompt": "x", "tasks": []}, "tasks"),
    ({"kind": "nope", "backend": "claude", "prompt": "x"}, "kind"),
])
def test_a_job_body_its_route_would_refuse_is_a_400_naming_the_field(server, body, field):
    resp = requests.post(server.url("/api/v1/jobs"), json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"]["field"] == field


def test_the_jobs_cli_submits_a_compare_and_a_parallel_from_a_body_file(server, tmp_path):
    env = {**server.env, "CLINVK_URL": server.base_url}
    cli = [sys.executable, "-m", "clinvk.cli", "jobs", "submit"]
    compared = subprocess.run([*cli, "--kind", "compare", "-b", "claude", "-b", "gemini", "-f",
                               "both"], env=env, capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stderr
    job_id = compared.stdout.split("\n", 1)[0]
    assert "[task 1: ok]" in compared.stdout and f"[job {job_id}: succeeded]" in compared.stdout
    body = tmp_path / "parallel.json"
    body.write_text(json.dumps({"tasks": [{"backend": "codex", "prompt": "from a file"}]}))
    queued = subprocess.run([*cli, "--kind", "parallel", "--body", str(body)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert queued.returncode == 0, queued.stderr
    assert finished(server, queued.stdout.strip())["kind"] == "parallel"
    missing = subprocess.run([*cli, "--kind", "chain", "x"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "--body" in missing.stderr
