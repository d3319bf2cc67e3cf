"""Jobs belong to the API key that submitted them, over HTTP with real keys: another key
gets 404 for every route of the job and never sees it in lists; an admin key sees all."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from support.fakes import fake

from clinvk.core.keys import key_id

KEY_A = "sk-jobs-owner-a-0123456789abcdef"
KEY_B = "sk-jobs-owner-b-0123456789abcdef"
ADMIN = "sk-jobs-admin-0123456789abcdef00"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"server": {"admin_key_ids": [key_id(ADMIN)]}},
                          extra_env={"CLINVK_API_KEYS": f"{KEY_A},{KEY_B},{ADMIN}"})


def call(server, method: str, path: str, key: str, headers: dict[str, str] | None = None,
         **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url(path), headers={"X-Api-Key": key,
                            **(headers or {})}, timeout=10, **kwargs)


def listed(server, key: str) -> set[str]:
    resp = call(server, "GET", "/api/v1/jobs?limit=500", key)
    assert resp.status_code == 200, resp.text
    return {j["id"] for j in resp.json()["data"]["jobs"]}


def test_another_key_never_sees_a_job_and_the_admin_sees_all(server) -> None:
    resp = call(server, "POST", "/api/v1/jobs", KEY_A,
                json={"backend": "claude", "prompt": fake("mine", reply="ok")})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["data"]["id"]
    for method, path in (("GET", f"/api/v1/jobs/{job_id}"),
                         ("GET", f"/api/v1/jobs/{job_id}/events"),
                         ("POST", f"/api/v1/jobs/{job_id}/cancel"),
                         ("DELETE", f"/api/v1/jobs/{job_id}")):
        assert call(server, method, path, KEY_B).status_code == 404, (method, path)
    assert job_id not in listed(server, KEY_B)
    assert job_id in listed(server, KEY_A) and job_id in listed(server, ADMIN)
    events = call(server, "GET", f"/api/v1/jobs/{job_id}/events", ADMIN,
                  headers={"Accept": "application/x-ndjson"})
    assert '"job_end"' in events.text
    assert call(server, "GET", f"/api/v1/jobs/{job_id}", KEY_A).json()["data"]["status"] \
        == "succeeded"
    assert call(server, "DELETE", f"/api/v1/jobs/{job_id}", ADMIN).status_code == 200
    assert call(server, "GET", f"/api/v1/jobs/{job_id}", KEY_A).status_code == 404


def test_a_cursor_outlives_the_job_it_points_after(server) -> None:
    ids = [call(server, "POST", "/api/v1/jobs", KEY_A, json={
        "backend": "claude", "prompt": fake("page", reply="ok")}).json()["data"]["id"]
        for _ in range(3)]
    first = call(server, "GET", "/api/v1/jobs?limit=1", KEY_A).json()["data"]
    assert [j["id"] for j in first["jobs"]] == [ids[-1]]
    # the job the cursor points after is deleted once it has finished: the page still works
    events = call(server, "GET", f"/api/v1/jobs/{ids[-1]}/events", KEY_A)
    assert '"job_end"' in events.text
    assert call(server, "DELETE", f"/api/v1/jobs/{ids[-1]}", KEY_A).status_code == 200
    second = call(server, "GET", f"/api/v1/jobs?limit=1&cursor={first['next_cursor']}",
                  KEY_A).json()["data"]
    assert [j["id"] for j in second["jobs"]] == [ids[-2]]
    bad = call(server, "GET", "/api/v1/jobs?cursor=bm9wZQ", KEY_A)
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "cursor"


def test_a_background_parallel_belongs_to_its_key_and_so_do_its_ledger_rows(server) -> None:
    def runs(key: str) -> int:
        groups = call(server, "GET", "/api/v1/usage?group_by=origin", key
                      ).json()["data"]["groups"]
        return sum(g["runs"] for g in groups if g["origin"] == "job")

    def unfinished(key: str) -> int:
        return sum(len(call(server, "GET", f"/api/v1/jobs?status={status}", key
                            ).json()["data"]["jobs"]) for status in ("queued", "running"))

    # earlier tests' jobs of these keys add their ledger rows when they finish
    deadline = time.monotonic() + 20
    while (unfinished(KEY_A) or unfinished(KEY_B)) and time.monotonic() < deadline:
        time.sleep(0.1)
    before_a, before_b = runs(KEY_A), runs(KEY_B)
    resp = call(server, "POST", "/api/v1/parallel", KEY_A, json={"background": True, "tasks": [
        {"backend": "claude", "prompt": "p1"}, {"backend": "gemini", "prompt": "p2"}]})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["data"]["id"]
    assert call(server, "GET", f"/api/v1/jobs/{job_id}", KEY_B).status_code == 404
    assert job_id not in listed(server, KEY_B) and job_id in listed(server, ADMIN)
    events = call(server, "GET", f"/api/v1/jobs/{job_id}/events", KEY_A,
                  headers={"Accept": "application/x-ndjson"})
    assert '"job_end"' in events.text
    assert call(server, "GET", f"/api/v1/jobs/{job_id}", KEY_A).json()["data"]["status"] \
        == "succeeded"
    assert runs(KEY_A) - before_a == 2 and runs(KEY_B) == before_b
