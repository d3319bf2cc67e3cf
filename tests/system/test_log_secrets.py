"""Secrets never reach a log line: a key sent in a query string (where it is refused as a
credential) is redacted in every log format of a real ``clinvk serve``; and a request that
cannot start a run leaves no backend process behind on a real server either."""

from __future__ import annotations

import json

import pytest
import requests
from support.procs import fakes_alive, wait_until

KEY = "sk-query-secret-0123456789abcdef"
OTHER = "tok-another-secret-9876543210"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_query_string_secrets_are_redacted_in_every_log_format(server_factory, log_format):
    srv = server_factory({"server": {"log_format": log_format, "log_level": "debug"}},
                         extra_env={"CLINVK_API_KEYS": KEY})
    for query in (f"api_key={KEY}", f"key={KEY}&limit=5", f"token={OTHER}",
                  f"Access_Token={OTHER}&x=1", f"password={OTHER}"):
        resp = requests.get(srv.url(f"/api/v1/sessions?{query}"), timeout=10,
                            headers={"X-Api-Key": KEY})
        assert resp.status_code in (200, 400), resp.text
        requests.get(srv.url(f"/health?{query}"), timeout=10)
    marker = "/health"
    assert wait_until(lambda: srv.log().count(marker) >= 5, 10), srv.log()
    log = srv.log()
    assert KEY not in log and OTHER not in log
    assert "[redacted]" in log or log_format == "json"  # JSON lines carry no query at all
    if log_format == "json":
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any(entry.get("path") == "/api/v1/sessions" for entry in lines)


def test_lone_surrogates_leave_nothing_running_on_a_real_server(server_factory) -> None:
    srv = server_factory()
    raw = json.dumps({"model": "claude", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi \ud800"}]})
    headers = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    with requests.Session() as http:
        for path in ("/openai/v1/chat/completions", "/anthropic/v1/messages",
                     "/api/v1/prompt"):
            body = raw if "v1/prompt" not in path else json.dumps({"prompt": "hi \ud800"})
            for _ in range(100):
                resp = http.post(srv.url(path), data=body, headers=headers, timeout=10)
                assert resp.status_code == 400, resp.text
    assert fakes_alive(srv.home, zombies=True) == []
    health = requests.get(srv.url("/health"), timeout=10)
    assert health.status_code == 200
