"""Job webhooks over a real gunicorn, delivered to a real local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from support.procs import wait_until

SECRET = "whsec-test-0123456789"


class Receiver:
    """Records every POST; per path: ``/ok`` answers 204, ``/flaky`` 500 once then 200,
    ``/hang`` never answers in time, ``/moved`` redirects to ``/ok``."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.release = threading.Event()
        flaky_seen: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hits.append({"path": self.path, "headers": dict(self.headers),
                                      "body": body})
                if self.path.startswith("/hang"):
                    receiver.release.wait(30)
                    return
                if self.path.startswith("/moved"):
                    self.send_response(302)
                    self.send_header("Location", "/ok")
                elif self.path.startswith("/flaky") and self.path not in flaky_seen:
                    flaky_seen.add(self.path)
                    self.send_response(500)
                else:
                    self.send_response(200 if self.path.startswith("/flaky") else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict[str, Any]]:
        return [h for h in self.hits if h["path"] == path]


def verified(hit: dict[str, Any]) -> dict[str, Any]:
    """The job object of one delivery, after checking its signature as a receiver would."""
    timestamp = hit["headers"]["X-Clinvk-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + hit["body"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit["headers"]["X-Clinvk-Signature"], "sha256=" + expected)
    assert abs(time.time() - int(timestamp)) < 60
    return json.loads(hit["body"])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.release.set()
    rec.httpd.shutdown()


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"server": {
        "workers": 2, "jobs_threads": 1, "jobs_webhook_allowed_hosts": ["127.0.0.1"],
        "jobs_webhook_secret": SECRET, "jobs_webhook_attempts": 3,
        "jobs_webhook_backoff_secs": 1, "jobs_webhook_timeout_secs": 1}})


def submit(server, body: dict[str, Any], path: str = "/api/v1/jobs") -> dict[str, Any]:
    resp = requests.post(server.url(path), json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()["data"]


def job(server, job_id: str) -> dict[str, Any]:
    return requests.get(server.url(f"/api/v1/jobs/{job_id}"), timeout=10).json()["data"]


def settled(server, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job once its webhook is delivered or has failed for good."""
    assert wait_until(lambda: job(server, job_id)["webhook"]["state"] != "pending", timeout)
    return job(server, job_id)


def test_a_failed_first_attempt_is_retried_and_every_delivery_is_signed(server, receiver):
    created = submit(server, {"backend": "claude", "prompt": "hook me",
                              "callback_url": receiver.url("/flaky/1")})
    assert created["webhook"] == {"url": receiver.url("/flaky/1"), "state": "pending",
                                  "attempts": 0, "last_status": None, "last_error": None,
                                  "delivered_at": None}
    final = settled(server, created["id"])
    hook = final["webhook"]
    assert hook["state"] == "delivered" and hook["attempts"] == 2
    assert hook["last_status"] == 200 and hook["last_error"] is None and hook["delivered_at"]
    hits = receiver.at("/flaky/1")
    assert [h["headers"]["X-Clinvk-Attempt"] for h in hits] == ["1", "2"]
    payload = verified(hits[-1])
    assert payload["id"] == created["id"] and payload["status"] == "succeeded"
    assert payload["result"]["output"].startswith("Hello from stub")
    assert "webhook" not in payload
    assert SECRET not in server.log()


def test_a_background_compare_that_is_cancelled_reports_cancelled(server, receiver):
    created = submit(server, {"backends": ["claude", "gemini"], "background": True,
                              "prompt": 'slow FAKE{"pause_after_first": 60}',
                              "callback_url": receiver.url("/ok/compare")},
                     path="/api/v1/compare")
    assert wait_until(lambda: job(server, created["id"])["status"] == "running", 20)
    requests.post(server.url(f"/api/v1/jobs/{created['id']}/cancel"), timeout=10)
    assert settled(server, created["id"])["webhook"]["last_status"] == 204
    payload = verified(receiver.at("/ok/compare")[0])
    assert payload["kind"] == "compare" and payload["status"] == "cancelled"


def test_a_hanging_receiver_times_out_without_holding_the_job_slot(server, receiver):
    hung = submit(server, {"backend": "claude", "prompt": "to a hang",
                           "callback_url": receiver.url("/hang")})
    assert wait_until(lambda: receiver.at("/hang"), 20)
    # One job thread per worker: a later job still runs while the delivery hangs.
    after = submit(server, {"backend": "codex", "prompt": "meanwhile"})
    assert wait_until(lambda: job(server, after["id"])["status"] == "succeeded", 20)
    final = settled(server, hung["id"], timeout=40)
    assert final["status"] == "succeeded"
    hook = final["webhook"]
    assert hook["state"] == "failed" and hook["attempts"] == 3
    assert hook["last_status"] is None and hook["last_error"] == "timed out after 1 s"


def test_a_redirect_is_not_followed(server, receiver):
    created = submit(server, {"backend": "gemini", "prompt": "moved",
                              "callback_url": receiver.url("/moved")})
    hook = settled(server, created["id"])["webhook"]
    assert hook["state"] == "failed" and hook["last_status"] == 302
    assert "not followed" in hook["last_error"]
    assert len(receiver.at("/moved")) == 3 and not receiver.at("/ok")


@pytest.mark.parametrize(("path", "body", "reason"), [
    ("/api/v1/jobs", {"backend": "claude", "prompt": "x",
                      "callback_url": "http://localhost:9/hook"}, "allow-list"),
    ("/api/v1/jobs", {"backend": "claude", "prompt": "x",
                      "callback_url": "http://10.0.0.1/hook"}, "allow-list"),
    ("/api/v1/jobs", {"backend": "claude", "prompt": "x",
                      "callback_url": "file:///etc/passwd"}, "http"),
    ("/api/v1/jobs", {"backend": "claude", "prompt": "x",
                      "callback_url": "http://u:p@127.0.0.1/hook"}, "credentials"),
    ("/api/v1/parallel", {"background": True, "tasks": [{"backend": "claude", "prompt": "x"}],
                          "callback_url": "https://evil.example/hook"}, "allow-list"),
    ("/api/v1/prompt", {"backend": "claude", "prompt": "x",
                        "callback_url": "http://127.0.0.1/hook"}, "background"),
])
def test_a_callback_url_the_server_would_not_call_is_a_400_naming_it(server, path, body,
                                                                      reason):
    resp = requests.post(server.url(path), json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"]["field"] == "callback_url"
    assert reason in resp.json()["error"]


def test_without_an_allow_list_no_callback_is_accepted(server_factory, receiver):
    plain = server_factory({"server": {"jobs_webhook_secret": SECRET}})
    resp = requests.post(plain.url("/api/v1/jobs"), timeout=10, json={
        "backend": "claude", "prompt": "x", "callback_url": receiver.url("/ok/none")})
    assert resp.status_code == 400 and "webhooks are off" in resp.json()["error"]
    assert not receiver.at("/ok/none")


def test_config_show_masks_the_secret(server):
    env = {**server.env, "CLINVK_SERVER_JOBS_WEBHOOK_SECRET": SECRET}
    shown = subprocess.run([sys.executable, "-m", "clinvk.cli", "config", "show"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "jobs_webhook_secret" in shown.stdout and SECRET not in shown.stdout


def test_the_jobs_cli_submits_with_a_callback_url(server, receiver):
    env = {**server.env, "CLINVK_URL": server.base_url}
    done = subprocess.run([sys.executable, "-m", "clinvk.cli", "jobs", "submit", "-b", "codex",
                           "--callback-url", receiver.url("/ok/cli"), "from the cli"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert settled(server, job_id)["webhook"]["state"] == "delivered"
    assert verified(receiver.at("/ok/cli")[0])["id"] == job_id
