"""No key material in a real server's logs (text and JSON, debug level) after keyed runs in
every dialect, a budget refusal, a job, a bad key, the usage route and the dashboard: not
the key, not its SHA-256 digest (what the key store keeps, hex or base64), not the rest of
the digest its key id is cut from. A key is named in logs by its id only."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from support.fakes import fake
from support.procs import wait_until

from clinvk.core.keys import key_id

KEY = "sk-logs-user-0123456789abcdef"
BUDGETED = "sk-logs-budget-0123456789abc"
KEYS = (KEY, BUDGETED)


def _material(key: str) -> list[str]:
    plain = hashlib.sha256(key.encode()).digest()
    separated = hashlib.sha256(b"clinvk-api-key\0" + key.encode()).hexdigest()
    assert separated.startswith(key_id(key))
    return [key, plain.hex(), base64.b64encode(plain).decode().rstrip("="),
            base64.urlsafe_b64encode(plain).decode().rstrip("="), separated[24:]]


def _traffic(srv) -> None:
    h = {"X-Api-Key": KEY}
    prompt = fake("hi", reply="ok")
    assert requests.post(srv.url("/api/v1/prompt"), headers=h, timeout=30,
                         json={"backend": "claude", "prompt": prompt}).status_code == 200
    assert requests.post(srv.url("/openai/v1/chat/completions"), timeout=30,
                         headers={"Authorization": f"Bearer {KEY}"},
                         json={"model": "codex", "messages": [
                             {"role": "user", "content": prompt}]}).status_code == 200
    assert requests.post(srv.url("/anthropic/v1/messages"), timeout=30,
                         headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                         json={"model": "gemini", "max_tokens": 50, "messages": [
                             {"role": "user", "content": prompt}]}).status_code == 200
    job = requests.post(srv.url("/api/v1/jobs"), headers=h, timeout=30,
                        json={"backend": "codex", "prompt": prompt})
    assert job.status_code == 202, job.text
    job_url = srv.url(f"/api/v1/jobs/{job.json()['data']['id']}")
    assert wait_until(lambda: requests.get(job_url, headers=h, timeout=10)
                      .json()["data"]["status"] == "succeeded", 20)
    for expected in (200, 429):
        assert requests.post(srv.url("/api/v1/prompt"), headers={"X-Api-Key": BUDGETED},
                             json={"backend": "claude", "prompt": prompt},
                             timeout=30).status_code == expected
    assert requests.get(srv.url("/api/v1/usage?group_by=key&recent=10"), headers=h,
                        timeout=10).status_code == 200
    assert requests.get(srv.url("/dashboard"), timeout=10).status_code == 200
    assert requests.get(srv.url("/api/v1/usage"), timeout=10,
                        headers={"X-Api-Key": KEY[:-1]}).status_code == 401


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_carry_no_key_material(server_factory, log_format: str) -> None:
    srv = server_factory({"server": {
        "log_format": log_format, "log_level": "debug", "metrics_enabled": True,
        "budgets": {key_id(BUDGETED): "runs 1 per 5 minutes"}}},
        extra_env={"CLINVK_API_KEYS": ",".join(KEYS)})
    _traffic(srv)
    assert wait_until(lambda: "/dashboard" in srv.log(), 10)
    srv.stop(timeout=10)  # the shutdown lines too
    log = srv.log()
    assert "/api/v1/prompt" in log and "/openai/v1/chat/completions" in log
    for key in KEYS:
        for material in _material(key):
            assert material not in log, (key, material)
    # the operator learns which key was refused: by its id
    assert f"budget runs 1/5 minutes of key id {key_id(BUDGETED)} is spent" in log
