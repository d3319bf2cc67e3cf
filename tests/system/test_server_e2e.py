"""End to end: a real `clinvk serve` (gunicorn gthread) with the fake CLIs on PATH.

Covers every native route, both envelope modes, every error status the gateway produces,
streaming that really streams, client disconnects and SIGTERM shutdown (no backend
process may survive any of them).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from support.fakes import FAKE_BIN, REPO, fake
from support.procs import pids_alive, wait_until

PROMPT = "/api/v1/prompt"


def post(server, path: str, body, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    return requests.post(server.url(path), json=body, **kwargs)


def error_of(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["code"] == code, body
    assert resp.headers["X-Request-ID"]
    return body


# --------------------------------------------------------------------------- every route


def test_meta_routes(server) -> None:
    health = requests.get(server.url("/health"), timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert [b["name"] for b in body["backends"]] == ["claude", "codex", "gemini"]
    assert body["session_store"]["available"] is True

    from openapi_spec_validator import validate

    spec = requests.get(server.url("/openapi.json"), timeout=10)
    assert spec.headers["Content-Type"].startswith("application/json")
    validate(spec.json())

    docs = requests.get(server.url("/docs"), timeout=10)
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    bundle = requests.get(server.url("/docs/static/swagger-ui/swagger-ui-bundle.js"), timeout=10)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


def test_dry_run_session_lifecycle(server) -> None:
    resp = post(server, PROMPT, {"backend": "gemini", "prompt": "-x rm", "dry_run": True},
                headers={"X-Request-ID": "dry-run-1"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "dry-run-1"
    data = resp.json()["data"]
    argv = data["command"]
    assert argv[0] == "gemini"
    shown = shlex.join([str(FAKE_BIN / "gemini"), *argv[1:]])  # the binary's resolved path
    assert data["output"] == f"Would execute: {shown} <<< {shlex.quote('-x rm')}"
    sid = data["session_id"]
    listed = requests.get(server.url("/api/v1/sessions"), params={"backend": "gemini"},
                          timeout=10).json()["data"]
    assert sid in [s["id"] for s in listed["sessions"]]
    got = requests.get(server.url(f"/api/v1/sessions/{sid[:10]}"), timeout=10).json()["data"]
    assert got["id"] == sid and got["status"] == "completed" and "api" in got["tags"]
    deleted = requests.delete(server.url(f"/api/v1/sessions/{sid}"), timeout=10)
    assert deleted.json()["data"] == {"deleted": True, "id": sid}
    error_of(requests.get(server.url(f"/api/v1/sessions/{sid}"), timeout=10), 404, "not_found")


def test_prompt_new_and_continued(server) -> None:
    first = post(server, PROMPT, {"backend": "claude", "prompt": "hello"})
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert data["output"] == "Hello from stub (turn 1)"
    again = post(server, PROMPT, {"session_id": data["session_id"], "prompt": "more"})
    assert again.status_code == 200, again.text
    assert again.json()["data"]["output"] == "Hello from stub (turn 2)"


def test_backends_route(server) -> None:
    data = requests.get(server.url("/api/v1/backends"), timeout=10).json()["data"]
    assert [(b["name"], b["available"]) for b in data["backends"]] == [
        ("claude", True), ("codex", True), ("gemini", True)]


def test_parallel_runs_tasks_concurrently(server) -> None:
    tasks = [{"backend": ("claude", "codex", "gemini")[i % 3],
              "prompt": fake(f"task {i}", delay=1, reply=f"r{i}")} for i in range(8)]
    started = time.monotonic()
    resp = post(server, "/api/v1/parallel", {"tasks": tasks, "max_parallel": 8})
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["completed"] == 8
    assert [r["output"] for r in data["results"]] == [f"r{i}" for i in range(8)]
    assert elapsed < 1.9, elapsed


def test_parallel_fail_fast_leaves_no_backend_alive(server, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    slow = [{"backend": "codex", "prompt": fake(f"slow {i}", delay=30, pidfile=str(pidfile))}
            for i in range(3)]
    failing = {"backend": "claude", "prompt": fake("bad", delay=0.5, error=500)}
    queued = {"backend": "gemini", "prompt": fake("queued", pidfile=str(pidfile))}
    started = time.monotonic()
    resp = post(server, "/api/v1/parallel", {"tasks": [*slow, failing, queued],
                                             "max_parallel": 4, "fail_fast": True})
    assert resp.status_code == 200, resp.text
    assert time.monotonic() - started < 10
    data = resp.json()["data"]
    assert [r["status"] for r in data["results"]] == ["cancelled"] * 3 + ["failed", "cancelled"]
    assert data["failed"] == 1 and data["cancelled"] == 4
    assert len(pidfile.read_text().split()) == 3  # the queued task never started
    assert pids_alive(pidfile) == []


def test_chain_and_compare(server) -> None:
    chain = post(server, "/api/v1/chain", {"steps": [
        {"backend": "gemini", "prompt": fake("one", reply="FIRST")},
        {"backend": "claude", "prompt": "FAKE{\"reply\": \"saw {{previous}}\"}"},
    ]})
    assert chain.status_code == 200, chain.text
    assert [r["output"] for r in chain.json()["data"]["results"]] == ["FIRST", "saw FIRST"]
    compare = post(server, "/api/v1/compare", {"backends": ["codex", "claude"],
                                               "prompt": fake("hi", delay=0.5)})
    assert compare.status_code == 200, compare.text
    data = compare.json()["data"]
    assert [r["backend"] for r in data["results"]] == ["codex", "claude"]
    assert data["completed"] == 2 and data["total_duration_ms"] < 1400  # concurrent


# --------------------------------------------------------------------------- error statuses


def test_client_errors(server) -> None:
    error_of(post(server, PROMPT, {"backend": "claude"}), 400, "invalid_request")
    error_of(requests.post(server.url(PROMPT), data="{nope", timeout=10,
                           headers={"Content-Type": "application/json"}), 400, "invalid_json")
    error_of(post(server, PROMPT, {"backend": "claude", "prompt": "x", "workdir": "/proc"}),
             403, "forbidden")
    error_of(requests.get(server.url("/api/v1/sessions/0123abcd"), timeout=10),
             404, "not_found")
    resp = requests.put(server.url(PROMPT), json={}, timeout=10)
    error_of(resp, 405, "method_not_allowed")
    error_of(requests.post(server.url(PROMPT), data={"prompt": "x"}, timeout=10), 415,
             "unsupported_media_type")
    big = {"backend": "claude", "prompt": "x" * (11 * 1024 * 1024)}
    error_of(post(server, PROMPT, big), 413, "request_too_large")


def test_backend_failure_and_timeout(server) -> None:
    resp = post(server, PROMPT, {"backend": "gemini", "prompt": fake("x", error=429)})
    body = error_of(resp, 502, "backend_failed")
    assert resp.headers["x-should-retry"] == "false" and body["data"]["exit_code"] != 0
    resp = post(server, PROMPT, {"backend": "claude", "prompt": fake("x", hang=True),
                                 "timeout_secs": 0.5})
    body = error_of(resp, 504, "backend_timeout")
    assert resp.headers["x-should-retry"] == "false" and body["data"]["status"] == "timeout"


def test_concurrent_continuation_is_409(server) -> None:
    sid = post(server, PROMPT, {"backend": "codex", "prompt": "start"}).json()["data"][
        "session_id"]
    slow = threading.Thread(target=post, args=(server, PROMPT, {
        "session_id": sid, "prompt": fake("slow", delay=2)}))
    slow.start()
    try:
        time.sleep(0.5)
        error_of(post(server, PROMPT, {"session_id": sid, "prompt": "second"}),
                 409, "session_busy")
    finally:
        slow.join()


def test_saturation_read_timeout_and_bare_envelope(server_factory) -> None:
    srv = server_factory({"server": {"max_concurrent_runs": 1, "queue_timeout_secs": 0,
                                     "read_timeout_secs": 1, "response_envelope": False}})
    ok = post(srv, PROMPT, {"backend": "claude", "prompt": "hi", "ephemeral": True})
    assert ok.status_code == 200 and ok.json()["output"] == "Hello from stub (turn 1)"
    assert "success" not in ok.json()
    hold = threading.Thread(target=post, args=(srv, PROMPT, {
        "backend": "claude", "prompt": fake("hold", delay=2), "ephemeral": True}))
    hold.start()
    try:
        time.sleep(0.7)
        resp = post(srv, PROMPT, {"backend": "codex", "prompt": "x"})
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "server_saturated" and resp.json()["message"]
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        hold.join()
    bad = post(srv, PROMPT, {"prompt": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    # A body that stalls longer than server.read_timeout_secs: 408.
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{\"backend\":")
        started = time.monotonic()
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert 0.8 < time.monotonic() - started < 5
    sessions = requests.get(srv.url("/api/v1/sessions"), timeout=10).json()
    assert sessions["sessions"] == [] and sessions["total"] == 0


def test_slow_request_heads_do_not_starve_the_server(server_factory) -> None:
    """Slowloris: clients that send part of a request head and stall or trickle must not
    keep the worker's threads; server.read_timeout_secs bounds the whole head."""
    srv = server_factory({"server": {"read_timeout_secs": 2, "graceful_timeout_secs": 30}},
                         args=("--port", "0", "--threads", "2"))
    partial = b"GET /health HTTP/1.1\r\nHost: x\r\n"
    stalled = [socket.create_connection((srv.host, srv.port), timeout=15) for _ in range(2)]
    for sock in stalled:
        sock.sendall(partial)
    trickler = socket.create_connection((srv.host, srv.port), timeout=15)
    stop = threading.Event()

    def trickle() -> None:  # one byte every 0.4 s: no single read ever waits 2 s
        with contextlib.suppress(OSError):
            for byte in b"GET /health HTTP/1.1\r\nX-Padding: " + b"a" * 200:
                if stop.wait(0.4):
                    return
                trickler.sendall(bytes([byte]))

    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        time.sleep(0.5)  # both threads now sit in the stalled heads
        started = time.monotonic()
        health = requests.get(srv.url("/health"), timeout=15)
        assert health.status_code == 200
        assert time.monotonic() - started < 6
        for sock in [*stalled, trickler]:  # closed by the server, not by us
            assert sock.recv(4096) == b""
        # A head that completes in time, in pieces, is served.
        with socket.create_connection((srv.host, srv.port), timeout=15) as sock:
            sock.sendall(partial)
            time.sleep(0.5)
            sock.sendall(b"Connection: close\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        stop.set()
        feeder.join()
        for sock in [*stalled, trickler]:
            sock.close()
    log = srv.log()
    assert log.count("no complete request head within 2 s (server.read_timeout_secs)") >= 3
    assert "Traceback" not in log
    # A stopping worker does not wait out graceful_timeout_secs for an unfinished head.
    with socket.create_connection((srv.host, srv.port), timeout=15) as sock:
        sock.sendall(partial)
        time.sleep(0.3)
        started = time.monotonic()
        assert srv.stop(timeout=20) == 0
        assert time.monotonic() - started < 5
    assert "the worker is stopping" in srv.log()


# --------------------------------------------------------------------------- streaming


def stream_lines(server, body, **kwargs):
    resp = requests.post(server.url(PROMPT), json={**body, "output_format": "stream-json"},
                         stream=True, timeout=30, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert resp.headers["X-Accel-Buffering"] == "no"
    return resp


def test_stream_lines_arrive_before_the_backend_finishes(server) -> None:
    started = time.monotonic()
    resp = stream_lines(server, {"backend": "claude",
                                 "prompt": fake("hello world", pause_after_first=1.5)})
    seen: list[tuple[float, dict]] = []
    for line in resp.iter_lines():
        if line:
            seen.append((time.monotonic() - started, json.loads(line)))
    first_text = next(t for t, e in seen if e["type"] == "message")
    done_at = seen[-1][0]
    assert seen[-1][1]["type"] == "done"
    assert [e["type"] for _, e in seen].count("done") == 1
    assert first_text < 1.2 and done_at >= 1.5, (first_text, done_at)


def test_stream_error_is_the_terminal_event(server) -> None:
    resp = stream_lines(server, {"backend": "codex", "prompt": fake("x", error=500)})
    events = [json.loads(line) for line in resp.iter_lines() if line]
    assert events[-1]["type"] == "error"
    assert [e["type"] for e in events].count("error") == 1
    assert "done" not in [e["type"] for e in events]


def test_stream_client_disconnect_kills_the_backend(server, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    resp = stream_lines(server, {"backend": "claude", "ephemeral": True, "prompt": fake(
        "talk", pause_after_first=60, pidfile=str(pidfile))})
    lines = resp.iter_lines()
    while json.loads(next(lines))["type"] != "message":
        pass
    assert len(pids_alive(pidfile)) == 1
    resp.close()
    assert wait_until(lambda: not pids_alive(pidfile), timeout=2.5), pids_alive(pidfile)


def test_silent_stream_disconnect_kills_the_backend(server, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    body = json.dumps({"backend": "gemini", "output_format": "stream-json",
                       "prompt": fake("x", delay=60, pidfile=str(pidfile))}).encode()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert wait_until(lambda: len(pids_alive(pidfile)) == 1, timeout=5)
    sock.close()
    assert wait_until(lambda: not pids_alive(pidfile), timeout=2.5), pids_alive(pidfile)


def test_non_streaming_disconnect_kills_the_backend(server, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with pytest.raises(requests.Timeout):
        post(server, PROMPT, {"backend": "codex", "prompt": fake(
            "x", delay=60, pidfile=str(pidfile))}, timeout=1.5)
    assert wait_until(lambda: not pids_alive(pidfile), timeout=2.5), pids_alive(pidfile)


# --------------------------------------------------------------------------- shutdown


def test_sigterm_stops_running_backends_and_exits_0(server_factory, tmp_path: Path) -> None:
    srv = server_factory()
    pidfile = tmp_path / "pids"
    results: dict[str, object] = {}

    def call(name: str, body: dict) -> None:
        try:
            results[name] = post(srv, PROMPT, body, timeout=20)
        except requests.RequestException as exc:
            results[name] = exc

    calls = [
        threading.Thread(target=call, args=("plain", {
            "backend": "claude", "prompt": fake("x", hang=True, pidfile=str(pidfile))})),
        threading.Thread(target=call, args=("stream", {
            "backend": "codex", "output_format": "stream-json",
            "prompt": fake("y", delay=60, pidfile=str(pidfile))})),
    ]
    for thread in calls:
        thread.start()
    assert wait_until(lambda: len(pids_alive(pidfile)) == 2, timeout=10)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=15) == 0, srv.log()
    assert time.monotonic() - started < 10
    assert pids_alive(pidfile) == []
    for thread in calls:
        thread.join(timeout=10)
    plain = results["plain"]
    if isinstance(plain, requests.Response):  # answered before the socket closed
        assert plain.status_code == 503 and plain.json()["code"] == "run_cancelled"
    assert "Shutting down" in srv.log()


# --------------------------------------------------------------------------- ways to serve


def test_config_file_drives_serve_when_flags_are_absent(server_factory) -> None:
    srv = server_factory({"server": {"port": 0, "workers": 2, "threads": 4}}, args=())
    assert wait_until(lambda: srv.log().count("Booting worker") == 2, timeout=10), srv.log()
    assert requests.get(srv.url("/health"), timeout=10).json()["status"] == "ok"
    assert srv.stop() == 0


def test_gunicorn_conf_and_wsgi_serve_the_same_app(server_factory) -> None:
    srv = server_factory({"server": {"port": 0}}, command=[
        sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
        "--chdir", str(REPO)])
    resp = post(srv, PROMPT, {"backend": "codex", "prompt": "hi", "ephemeral": True})
    assert resp.status_code == 200 and resp.json()["data"]["output"]
    assert srv.stop() == 0


def test_access_log_switch(server, server_factory) -> None:
    on = requests.get(server.url("/health"), timeout=10).headers["X-Request-ID"]
    assert wait_until(lambda: f"rid={on}" in server.log(), timeout=5), server.log()[-2000:]
    quiet = server_factory({"server": {"access_log": False}})
    off = requests.get(quiet.url("/health"), timeout=10).headers["X-Request-ID"]
    time.sleep(0.3)  # gunicorn writes the access line just after the response
    assert f"rid={off}" not in quiet.log() and '"GET /health' not in quiet.log()
