"""Fault injection through a real ``clinvk serve`` (docs/performance.md).

Each test starts real gunicorn servers with the fake CLIs and breaks something on purpose:

* the client hangs up mid-stream (NDJSON and both SSE APIs): the backend's whole process
  group, a SIGTERM-ignoring grandchild included, is gone within 1 s;
* SIGTERM to the master with 20 runs in flight over every API: every client gets a clean
  answer, every backend process is gone, the master exits 0;
* ``kill -9`` of one of two gunicorn workers while sessions are being written: the
  database passes ``PRAGMA integrity_check``, no turn the client saw complete is lost, the
  sessions whose turn died with the worker can be continued at once, the backends the
  dead worker left running are killed by the master, and the replacement worker serves;
* backends that print garbage, a 10 MB line, nothing, or die mid-stream: a clear error in
  each API's own format (or the intact answer, for garbage around valid output), never a
  500 or a traceback, never a hang;
* the state directory's filesystem is full (a 2 MiB tmpfs mounted here as root): a clear
  ``store_error`` before any stream starts, no internal path leaked, session-less runs keep
  working, and the server recovers once space is freed.

The engine-level versions of the misbehaving-backend cases are in ``tests/core/test_faults.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.fakes import fake
from support.procs import pids_alive, wait_until

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
SERVE_ARGS = ("--port", "0")


def _serve(server_factory: Callable[..., Any], config: dict[str, Any] | None = None,
           *, args: tuple[str, ...] = SERVE_ARGS, **kwargs: Any) -> Any:
    return server_factory(config, args=args, **kwargs)


@pytest.fixture(scope="module")
def srv(server_factory) -> Iterator[Any]:
    server = _serve(server_factory, {"server": {"max_concurrent_runs": 24}})
    yield server
    server.stop(timeout=10)


def _no_tracebacks(server: Any) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-4000:]


# --------------------------------------------------------------------------- API calls

API_KINDS = ("native", "ndjson", "openai", "openai-sse", "anthropic", "anthropic-sse")


def _request(kind: str, backend: str, prompt: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(path, body, headers) of one run of ``prompt`` on ``backend`` through API ``kind``."""
    if kind in ("native", "ndjson"):
        body: dict[str, Any] = {"backend": backend, "prompt": prompt, "ephemeral": True}
        if kind == "ndjson":
            body["output_format"] = "stream-json"
        return "/api/v1/prompt", body, {}
    messages = [{"role": "user", "content": prompt}]
    if kind.startswith("openai"):
        return ("/openai/v1/chat/completions",
                {"model": backend, "messages": messages, "stream": kind.endswith("-sse")}, {})
    return ("/anthropic/v1/messages",
            {"model": backend, "max_tokens": 64, "messages": messages,
             "stream": kind.endswith("-sse")}, dict(ANTHROPIC_HEADERS))


def _sse_events(text: str) -> list[tuple[str | None, str]]:
    """``[(event name or None, data), ...]`` of an SSE body (comments skipped)."""
    out = []
    for block in text.split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        if data:
            out.append((name, "\n".join(data)))
    return out


def failure_message(kind: str, resp: requests.Response) -> str:
    """The error message of a failed run, checking it has the API's exact error shape."""
    if kind == "native":
        assert resp.status_code == 502, resp.text[:500]
        assert resp.headers["x-should-retry"] == "false"
        body = resp.json()
        assert body["success"] is False and body["code"] == "backend_failed", body
        assert body["data"]["status"] == "failed"
        return body["error"]
    if kind == "openai":
        assert resp.status_code == 502, resp.text[:500]
        assert resp.headers["x-should-retry"] == "false" and resp.headers["x-request-id"]
        error = resp.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "backend_failed", error
        return error["message"]
    if kind == "anthropic":
        assert resp.status_code == 502, resp.text[:500]
        assert resp.headers["x-should-retry"] == "false" and resp.headers["request-id"]
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == "api_error", body
        assert body["request_id"] == resp.headers["request-id"]
        return body["error"]["message"]
    # Streams: the failure comes after the 200 header, as the stream's terminal frame.
    assert resp.status_code == 200, resp.text[:500]
    if kind == "ndjson":
        events = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        assert [e["type"] for e in events].count("error") == 1
        assert events[-1]["type"] == "error" and "done" not in [e["type"] for e in events]
        assert events[-1]["content"]["code"] == "backend_error", events[-1]
        return events[-1]["content"]["message"]
    events = _sse_events(resp.text)
    if kind == "openai-sse":
        assert events[-1] == (None, "[DONE]"), events[-3:]
        error = json.loads(events[-2][1])["error"]
        assert error["code"] == "backend_failed" and error["type"] == "server_error"
        assert all("finish_reason\":\"stop" not in data for _, data in events)
        return error["message"]
    name, data = events[-1]
    assert name == "error", events[-3:]
    body = json.loads(data)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]
    return body["error"]["message"]


def answer_text(kind: str, resp: requests.Response) -> str:
    """The assistant's text of a successful run, in any API."""
    assert resp.status_code == 200, resp.text[:500]
    if kind == "native":
        return resp.json()["data"]["output"]
    if kind == "ndjson":
        events = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        assert events[-1]["type"] == "done", events[-1]
        return events[-1]["content"]["output"]
    if kind == "openai":
        return resp.json()["choices"][0]["message"]["content"]
    if kind == "anthropic":
        return resp.json()["content"][0]["text"]
    events = _sse_events(resp.text)
    if kind == "openai-sse":
        assert events[-1] == (None, "[DONE]")
        chunks = [json.loads(d) for _, d in events[:-1]]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c.get("choices"))
    assert events[-1][0] == "message_stop"
    return "".join(json.loads(d)["delta"]["text"] for n, d in events
                   if n == "content_block_delta")


# --------------------------------------------------------------------------- disconnects


def _raw_stream(server: Any, path: str, body: dict[str, Any], headers: dict[str, str],
                marker: bytes, timeout: float = 10.0) -> socket.socket:
    """Open a streaming request on a raw socket and read until ``marker`` arrived."""
    payload = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {server.host}:{server.port}",
            "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    received = b""
    deadline = time.monotonic() + timeout
    while marker not in received:
        assert time.monotonic() < deadline, received[-500:]
        chunk = sock.recv(65536)
        assert chunk, received[-500:]
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:300]
    return sock


# (API, backend, a byte string that only appears once the first text delta is on the wire)
DISCONNECT_CASES = [
    ("ndjson", "claude", b'"type":"message"'),
    ("openai-sse", "claude", b'"content":"Hello'),
    ("anthropic-sse", "gemini", b'"text_delta"'),
]


@pytest.mark.parametrize(("kind", "backend", "marker"), DISCONNECT_CASES,
                         ids=[c[0] for c in DISCONNECT_CASES])
def test_client_disconnect_mid_stream_kills_the_group_within_1s(
        srv, tmp_path: Path, kind: str, backend: str, marker: bytes) -> None:
    pidfile = tmp_path / "pids"
    # The backend pauses after its first text chunk; its grandchild ignores SIGTERM, so the
    # group is only gone once the gateway escalates to SIGKILL.
    prompt = fake("talk", pause_after_first=60, grandchild=True, pidfile=str(pidfile))
    path, body, headers = _request(kind, backend, prompt)
    sock = _raw_stream(srv, path, body, headers, marker)
    try:
        assert wait_until(lambda: len(pids_alive(pidfile)) == 2, timeout=5), pids_alive(pidfile)
    finally:
        sock.close()
    closed = time.monotonic()
    gone = wait_until(lambda: not pids_alive(pidfile), timeout=5, interval=0.01)
    took = time.monotonic() - closed
    print(f"\n[{kind}] backend group gone {took:.2f} s after the client hung up")
    assert gone, f"backend group still alive after 5 s: {pids_alive(pidfile)}"
    assert took <= 1.0, f"backend group took {took:.2f} s to die after the disconnect"
    _no_tracebacks(srv)


# --------------------------------------------------------------------------- misbehaving CLIs

# knob -> the error text every API must carry (None: the run must succeed intact)
MISBEHAVIOUR = {
    "garbage": ({"garbage": True}, None),
    "10MB-line": ({"big_line": 10_000_000}, "exceeded server.max_line_bytes"),
    "silent": ({"silent": True}, "no parseable output"),
    "die-midstream": ({"die_midstream": True}, "exited with code 1"),
}


@pytest.mark.parametrize("case", list(MISBEHAVIOUR))
def test_misbehaving_backend_gets_a_clear_answer_in_every_api(srv, case: str) -> None:
    knobs, expected = MISBEHAVIOUR[case]
    for i, kind in enumerate(API_KINDS):
        backend = ("claude", "codex", "gemini")[i % 3]
        path, body, headers = _request(kind, backend, fake(f"{case} via {kind}", **knobs))
        started = time.monotonic()
        resp = requests.post(srv.url(path), json=body, headers=headers, timeout=30)
        took = time.monotonic() - started
        assert took < 10, f"{kind}/{backend}: {took:.1f} s"
        assert resp.status_code != 500, resp.text[:500]
        if expected is None:
            assert answer_text(kind, resp).startswith("Hello from stub"), (kind, backend)
        else:
            message = failure_message(kind, resp)
            assert expected in message, (kind, backend, message)
    _no_tracebacks(srv)


def test_tool_process_left_behind_by_a_finished_run_is_killed(srv, tmp_path: Path) -> None:
    """A run that ends normally leaves nothing running, also not a process that left the
    run's process group (setsid, as the real CLIs start tool shells)."""
    pidfile = tmp_path / "escape.pids"
    for i, kind in enumerate(("native", "openai", "anthropic")):
        backend = ("claude", "codex", "gemini")[i]
        path, body, headers = _request(kind, backend, fake(f"escape via {kind}", escape=True,
                                                           pidfile=str(pidfile)))
        resp = requests.post(srv.url(path), json=body, headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text[:500]
        assert answer_text(kind, resp).startswith("Hello from stub"), kind
        assert len(pidfile.read_text().split()) == 2 * (i + 1)  # the fake, its sleeper
        assert wait_until(lambda: not pids_alive(pidfile), 5), (kind, pids_alive(pidfile))
    assert srv.log().count("left running outside their process group") >= 3
    _no_tracebacks(srv)


# --------------------------------------------------------------------------- SIGTERM


def _terminal_of(kind: str, resp: requests.Response) -> str:
    """How a run cancelled by shutdown was reported: must be a clean, API-shaped answer."""
    if kind in ("native", "openai", "anthropic"):
        assert resp.status_code == 503, resp.text[:500]
        assert resp.headers["x-should-retry"] == "false"
        body = resp.json()
        if kind == "native":
            assert body["code"] == "run_cancelled" and body["data"]["status"] == "cancelled"
        elif kind == "openai":
            assert body["error"]["code"] == "run_cancelled"
        else:
            assert body["type"] == "error" and body["error"]["message"]
        return "cancelled"
    assert resp.status_code == 200, resp.text[:500]
    if kind == "ndjson":
        last = json.loads(resp.text.strip().splitlines()[-1])
        assert last["type"] == "error" and last["content"]["code"] == "cancelled", last
    elif kind == "openai-sse":
        events = _sse_events(resp.text)
        assert events[-1] == (None, "[DONE]")
        assert json.loads(events[-2][1])["error"]["code"] == "run_cancelled"
    else:
        assert _sse_events(resp.text)[-1][0] == "error"
    return "cancelled"


def test_sigterm_with_20_runs_in_flight(server_factory, tmp_path: Path) -> None:
    server = _serve(server_factory, {"server": {"max_concurrent_runs": 24, "threads": 32}})
    pidfile = tmp_path / "pids"
    answers: dict[int, Any] = {}

    def call(i: int) -> None:
        kind = API_KINDS[i % len(API_KINDS)]
        knobs: dict[str, Any] = {"hang": True} if i % 2 else {"delay": 60}
        if i % 4 == 0:
            knobs["grandchild"] = True  # ignores SIGTERM: needs the SIGKILL escalation
        path, body, headers = _request(kind, ("claude", "codex", "gemini")[i % 3],
                                       fake(f"run {i}", pidfile=str(pidfile), **knobs))
        if kind in ("native", "ndjson"):
            body["ephemeral"] = i % 3 == 0  # some runs write sessions too
        try:
            answers[i] = (kind, requests.post(server.url(path), json=body, headers=headers,
                                              timeout=30))
        except requests.RequestException as exc:  # pragma: no cover - reported below
            answers[i] = (kind, exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    expected = 20 + sum(1 for i in range(20) if i % 4 == 0)
    assert wait_until(lambda: len(pids_alive(pidfile)) == expected, timeout=30), \
        (len(pids_alive(pidfile)), expected)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=30)
    took = time.monotonic() - started
    left = pids_alive(pidfile)
    print(f"\n[sigterm] master exited {code} after {took:.2f} s; backends left: {left}")
    for thread in threads:
        thread.join(timeout=30)
    assert code == 0, server.log()[-4000:]
    assert left == [], f"backend processes outlived the server: {left}"
    assert took < 10, f"shutdown took {took:.1f} s"
    assert len(answers) == 20
    for i, (kind, resp) in sorted(answers.items()):
        assert isinstance(resp, requests.Response), (i, kind, resp)
        _terminal_of(kind, resp)
    _no_tracebacks(server)


# --------------------------------------------------------------------------- kill -9 a worker


def _workers(server: Any) -> set[int]:
    path = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
    return {int(p) for p in path.read_text().split()}


def _parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^PPid:\s+(\d+)", status, re.M)
    return int(match.group(1)) if match else None


def test_kill_9_of_a_worker_during_session_writes(server_factory, tmp_path: Path) -> None:
    server = _serve(server_factory, {"server": {"workers": 2, "threads": 16}},
                    args=(*SERVE_ARGS, "--workers", "2"))
    assert wait_until(lambda: len(_workers(server)) == 2, timeout=15), server.log()
    pidfile = tmp_path / "pids"
    stop = threading.Event()
    tally: dict[str, dict[str, int]] = {}
    failures: list[Any] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        backend = ("claude", "codex", "gemini")[i % 3]
        resp = requests.post(server.url("/api/v1/prompt"), timeout=30, json={
            "backend": backend, "prompt": fake(f"start {i}", pidfile=str(pidfile))})
        assert resp.status_code == 200, resp.text
        sid = resp.json()["data"]["session_id"]
        counts = {"ok": 1, "attempts": 1}
        with lock:
            tally[sid] = counts
        while not stop.is_set():
            counts["attempts"] += 1
            try:
                resp = requests.post(server.url("/api/v1/prompt"), timeout=30, json={
                    "session_id": sid, "prompt": fake("again", pidfile=str(pidfile))})
            except requests.ConnectionError:
                continue  # the worker serving it was killed: the turn may or may not count
            if resp.status_code == 200:
                counts["ok"] += 1
            else:
                with lock:
                    failures.append((sid, resp.status_code, resp.text[:300]))

    def hang() -> None:  # a long run the killed worker leaves behind
        with contextlib.suppress(requests.RequestException):
            requests.post(server.url("/api/v1/prompt"), timeout=30, json={
                "backend": "gemini", "ephemeral": True,
                "prompt": fake("hang", hang=True, grandchild=True, pidfile=str(hangfile))})

    hangfile = tmp_path / "hang-pids"
    clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    clients.append(threading.Thread(target=hang))
    for thread in clients:
        thread.start()
    try:
        # Wait until the turns are flowing, then kill the worker running the long run
        # while it also has session turns running.
        assert wait_until(lambda: len(tally) == 8 and all(
            c["ok"] >= 2 for c in tally.values()), timeout=30), tally
        assert wait_until(lambda: len(pids_alive(hangfile)) == 2, timeout=10)
        workers = _workers(server)
        victim = _parent(pids_alive(hangfile)[0])
        assert victim in workers
        assert wait_until(lambda: victim in {_parent(p) for p in pids_alive(pidfile)},
                          timeout=10, interval=0.005), "no session turn on that worker"
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_until(lambda: len(_workers(server) - {victim}) == 2, timeout=15), \
            server.log()[-3000:]
        # The master kills what the dead worker left running (its run ledger).
        assert wait_until(lambda: not pids_alive(hangfile), timeout=5), pids_alive(hangfile)
        orphans_gone = time.monotonic() - killed_at
        print(f"\n[kill -9] the dead worker's backends gone after {orphans_gone:.2f} s")
        # Keep writing until the replacement worker has run backends itself (its run
        # ledger appears with its first run).
        replacement = _workers(server) - workers
        assert len(replacement) == 1, (workers, _workers(server))
        ledger = server.clinvk_home / "run" / f"worker-{next(iter(replacement))}.runs"
        assert wait_until(ledger.exists, timeout=15), "the replacement worker ran nothing"
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        for pid in pids_alive(hangfile):  # only if the test failed: leave nothing behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert orphans_gone < 5
    # A session whose turn died with the worker must not stay "busy": the dead worker's
    # lease is taken over at once instead of blocking the session until it expires.
    print(f"[kill -9] {sum(c['ok'] for c in tally.values())} turns answered, "
          f"{len(failures)} refused after the kill")
    assert failures == [], failures[:5]
    db = sqlite3.connect(server.clinvk_home / "sessions.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for sid, counts in tally.items():
            turns, owner = db.execute(
                "SELECT turn_count, lease_owner FROM sessions WHERE id = ?", (sid,)).fetchone()
            # Every turn the client saw complete is stored; at most the ones whose answer
            # was lost with the worker come on top.
            assert counts["ok"] <= turns <= counts["attempts"], (sid, counts, turns)
            assert owner is None, (sid, owner)
    finally:
        db.close()
    # Every session still takes turns, and the server answers on both workers.
    for sid in tally:
        resp = requests.post(server.url("/api/v1/prompt"), timeout=30,
                             json={"session_id": sid, "prompt": "after the crash"})
        assert resp.status_code == 200, resp.text
    assert requests.get(server.url("/health"), timeout=10).status_code == 200
    assert time.monotonic() - killed_at < 60
    # The dead worker's backends finish their short runs on their own.
    assert wait_until(lambda: not pids_alive(pidfile), timeout=15), pids_alive(pidfile)
    _no_tracebacks(server)
    assert server.stop() == 0


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root can mount here; CI runs as root on the same kind of machine)."""
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, check=False) \
        if shutil.which("mount") else None
    if proc is None or proc.returncode != 0:
        reason = f"cannot mount a tmpfs: {proc.stderr.strip() if proc else 'no mount'}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_disk_full_state_dir_gives_a_clear_error(server_factory, small_fs: Path) -> None:
    server = _serve(server_factory, extra_env={"CLINVK_HOME": str(small_fs)})
    url = server.url("/api/v1/prompt")
    first = requests.post(url, json={"backend": "claude", "prompt": "before"}, timeout=30)
    assert first.status_code == 200, first.text
    sid = first.json()["data"]["session_id"]
    filler = _fill(small_fs)
    try:
        cases = {
            "new session": {"backend": "claude", "prompt": "x"},
            "dry run": {"backend": "codex", "prompt": "x", "dry_run": True},
            "continue": {"session_id": sid, "prompt": "x"},
            "stream, new session": {"backend": "gemini", "prompt": "x",
                                    "output_format": "stream-json"},
            "stream, continue": {"session_id": sid, "prompt": "x",
                                 "output_format": "stream-json"},
        }
        for name, body in cases.items():
            resp = requests.post(url, json=body, timeout=30)
            # Before any stream starts: a plain JSON error, not a 200 stream.
            assert resp.status_code == 500, (name, resp.status_code, resp.text[:300])
            assert resp.headers["Content-Type"].startswith("application/json"), name
            error = resp.json()
            assert error["code"] == "store_error", (name, error)
            assert "disk" in error["error"] and "full" in error["error"], (name, error)
            assert str(small_fs) not in resp.text, (name, resp.text)
        # What needs no session record keeps working.
        ephemeral = requests.post(url, timeout=30, json={
            "backend": "claude", "prompt": "x", "ephemeral": True})
        assert ephemeral.status_code == 200, ephemeral.text
        chat = requests.post(server.url("/openai/v1/chat/completions"), timeout=30, json={
            "model": "codex", "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 200, chat.text
        listing = requests.get(server.url("/api/v1/sessions"), timeout=10)
        assert listing.status_code == 200 and listing.json()["data"]["total"] == 1
        assert requests.get(server.url("/health"), timeout=10).status_code == 200
    finally:
        filler.unlink()
    log = server.log()
    assert "database or disk is full" in log  # the operator's log names the cause
    _no_tracebacks(server)
    # Space is back: the same session continues.
    again = requests.post(url, json={"session_id": sid, "prompt": "after"}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["session_id"] == sid
    assert server.stop() == 0
