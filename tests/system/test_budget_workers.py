"""Budgets across two gunicorn workers sharing a real redis (``redis_url``, as the rate
limiter's storage): the Nth run is refused whichever worker serves it, a job of a key past
its budget is refused at submit by either worker, and a second gateway on the same redis
shares the budget too."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from support.fakes import fake
from support.procs import wait_until

from clinvk.core.keys import key_id

KEY = "sk-budget-workers-0123456789ab"
JOB_KEY = "sk-budget-workers-jobs-012345"
GATEWAYS_KEY = "sk-budget-gateways-01234567"
RUNS = 4
MAX_REQUESTS = 40  # until both workers have refused a run


def _config(redis_url: str) -> dict:
    budgets = {key_id(KEY): f"runs {RUNS} per 5 minutes",
               key_id(JOB_KEY): "runs 1 per 5 minutes",
               key_id(GATEWAYS_KEY): "runs 2 per 5 minutes"}
    return {"server": {"rate_limit_storage_uri": redis_url, "budgets": budgets,
                       "log_format": "json", "threads": 4}}


KEYS_ENV = {"CLINVK_API_KEYS": f"{KEY},{JOB_KEY},{GATEWAYS_KEY}"}


@pytest.fixture(scope="module")
def two_workers(server_factory, redis_url):
    server = server_factory(_config(redis_url), args=("--workers", "2"), extra_env=KEYS_ENV)
    yield server
    server.stop(timeout=10)


def _served_by(server, request_ids: set[str]) -> dict[str, int]:
    """request id -> pid of the worker that answered it (the JSON access log)."""
    pids: dict[str, int] = {}
    for line in server.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "gunicorn.access" and entry.get("request_id") in request_ids:
                pids[entry["request_id"]] = entry["pid"]
    return pids


def _prompt(server, key: str, rid: str) -> requests.Response:
    # a new connection per request, so both workers get a share
    return requests.post(server.url("/api/v1/prompt"), timeout=30,
                         headers={"X-Api-Key": key, "X-Request-ID": rid, "Connection": "close"},
                         json={"backend": "codex", "prompt": fake("hi", reply="ok")})


def test_the_nth_run_is_refused_by_either_worker(two_workers) -> None:
    server = two_workers
    statuses: dict[str, int] = {}
    order: list[str] = []
    refused_by: set[int] = set()
    for _ in range(MAX_REQUESTS):
        rid = f"budget-{uuid.uuid4().hex[:12]}"
        resp = _prompt(server, KEY, rid)
        statuses[rid] = resp.status_code
        order.append(rid)
        if resp.status_code == 429:
            assert "runs 4/5 minutes" in resp.json()["error"]
            assert 1 <= int(resp.headers["Retry-After"]) <= 300
        if len(order) > RUNS and len(order) % 4 == 0:
            assert wait_until(lambda: len(_served_by(server, set(order))) == len(order), 10)
            pids = _served_by(server, set(order))
            refused_by = {pids[r] for r in order[RUNS:]}
            if len(refused_by) == 2:
                break
    assert [statuses[r] for r in order] == [200] * RUNS + [429] * (len(order) - RUNS)
    assert len(refused_by) == 2, f"one worker served every refused run: {refused_by}"


def test_a_job_past_the_budget_is_refused_at_submit_by_either_worker(two_workers) -> None:
    server = two_workers
    headers = {"X-Api-Key": JOB_KEY, "Connection": "close"}
    body = {"backend": "codex", "prompt": fake("hi", reply="ok")}
    first = requests.post(server.url("/api/v1/jobs"), json=body, headers=headers, timeout=30)
    assert first.status_code == 202, first.text
    job_url = server.url(f"/api/v1/jobs/{first.json()['data']['id']}")
    assert wait_until(lambda: requests.get(job_url, headers=headers, timeout=10)
                      .json()["data"]["status"] == "succeeded", 20)
    rids = {f"job-{uuid.uuid4().hex[:12]}" for _ in range(12)}
    for rid in rids:
        resp = requests.post(server.url("/api/v1/jobs"), json=body, timeout=30,
                             headers={**headers, "X-Request-ID": rid})
        assert resp.status_code == 429, resp.text
        assert resp.json()["code"] == "budget_exceeded" and "Retry-After" in resp.headers
    assert wait_until(lambda: len(_served_by(server, rids)) == len(rids), 10)
    listed = requests.get(server.url("/api/v1/jobs"), headers=headers, timeout=10)
    assert len(listed.json()["data"]["jobs"]) == 1  # none of the refused was queued


def test_a_second_gateway_on_the_same_redis_shares_the_budget(two_workers, server_factory,
                                                               redis_url) -> None:
    other = server_factory(_config(redis_url), extra_env=KEYS_ENV)  # its own store and home
    try:
        codes = [_prompt(gateway, GATEWAYS_KEY, f"gw-{n}").status_code
                 for n, gateway in enumerate((two_workers, other, two_workers, other))]
    finally:
        other.stop(timeout=10)
    assert codes == [200, 200, 429, 429]
