"""``clinvk serve`` (real gunicorn, two workers) on the shared PostgreSQL store: sessions,
resume, listings, jobs and a cancel that reaches the run from the other worker; the
SQLite file of the clinvk home is never created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from support.fakes import fake, marker
from support.procs import pids_alive, wait_until
from support.server_process import ServerProcess
from support.stores import pg_database

PROMPT = "/api/v1/prompt"


@pytest.fixture(scope="module")
def database(postgres_url: str) -> str:
    return pg_database(postgres_url, "serve_e2e")


@pytest.fixture(scope="module")
def gateway(server_factory, database: str) -> Iterator[ServerProcess]:
    yield server_factory({"store": {"url": database, "pool_max_size": 4},
                          "server": {"workers": 2}})


def data(resp: requests.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return resp.json()["data"]


def prompt(gateway: ServerProcess, text: str, **body: Any) -> dict[str, Any]:
    return data(requests.post(gateway.url(PROMPT), timeout=30,
                              json={"backend": "claude", "prompt": text} | body))


def test_a_session_lives_in_postgresql_and_resumes_on_any_worker(
        gateway: ServerProcess, database: str) -> None:
    word = marker()
    first = prompt(gateway, f"remember {word}")
    sid = first["session_id"]
    for turn in (2, 3, 4):  # several requests: both workers answer some of them
        again = prompt(gateway, "again", session_id=sid)
        assert again["output"] == f"Hello from stub (turn {turn})", again
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT turn_count, status, title FROM sessions WHERE id = %s",
                           (sid,)).fetchone()
    assert row == (4, "completed", f"remember {word}")
    listed = data(requests.get(gateway.url("/api/v1/sessions"), params={"limit": 1},
                               timeout=10))
    assert listed["sessions"][0]["id"] == sid and listed["total"] >= 1
    got = data(requests.get(gateway.url(f"/api/v1/sessions/{sid[:8]}"), timeout=10))
    assert got["id"] == sid and got["turn_count"] == 4
    assert not (gateway.clinvk_home / "sessions.db").exists()


def test_cursor_pages_walk_every_session_once(gateway: ServerProcess) -> None:
    made = {prompt(gateway, f"page {marker()}", backend="gemini")["session_id"]
            for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"backend": "gemini", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = data(requests.get(gateway.url("/api/v1/sessions"), params=params, timeout=10))
        seen += [s["id"] for s in page["sessions"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and page["total"] == 5


def test_a_job_is_cancelled_from_the_other_worker(gateway: ServerProcess, tmp_path) -> None:
    pidfile = tmp_path / "pids"
    created = data(requests.post(gateway.url("/api/v1/jobs"), timeout=10, json={
        "backend": "claude",
        "prompt": fake("stall", pause_after_first=60, pidfile=str(pidfile))}), 202)
    job_url = gateway.url(f"/api/v1/jobs/{created['id']}")
    assert wait_until(lambda: data(requests.get(job_url, timeout=10))["events"] >= 2, 15)
    assert pids_alive(pidfile)
    # Of several cancels, some land on the worker that does not run the job: the flag in
    # PostgreSQL reaches the runner.
    answers = [data(requests.post(job_url + "/cancel", timeout=10)) for _ in range(4)]
    assert {a["status"] for a in answers} == {"cancelled"}
    assert wait_until(lambda: not pids_alive(pidfile), 10)
    final = data(requests.get(job_url, timeout=10))
    assert final["status"] == "cancelled" and "Hello" in final["result"]["output"]
    with requests.get(job_url + "/events", stream=True, timeout=30) as resp:
        body = b"".join(resp.iter_content(None))
    assert resp.status_code == 200 and b'"type": "job_end"' in body.replace(b'":"', b'": "')


def test_only_the_workers_hold_connections_never_the_master(
        gateway: ServerProcess, database: str) -> None:
    for _ in range(6):  # a few requests, so that both workers have used the store
        data(requests.get(gateway.url("/api/v1/sessions"), timeout=10))
    with psycopg.connect(database) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'clinvk:%'")]
    pids = {int(name.rsplit(":", 1)[1]) for name in names}
    workers = set(map(int, Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children")
                      .read_text().split()))
    assert pids and pids <= workers, (pids, workers)  # the master (proc.pid) has none
    assert gateway.proc.pid not in pids
