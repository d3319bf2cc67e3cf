"""The security layer against a real ``clinvk serve`` (docs/security.md).

API keys (env and gopass, fail closed), public paths, CORS before auth, body-size 413
before the handler (declared and chunked), request ids, the bind refusal, workdir policy
through symlinks, the privilege ceiling, the concurrency cap, keys never leaking, and an
abuse run of 10,000 hostile requests. Rate limits: ``test_security_ratelimit.py``; several
workers with redis: ``test_security_workers.py``.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import urllib3
import yaml
from support.fakes import REPO, fake, fake_runs
from support.http import error_style, expected_style, served_prefixes
from support.procs import wait_until
from support.server_process import clean_environ

KEY_A = "sk-clinvk-alpha-" + secrets.token_hex(12)
KEY_B = "sk-clinvk-beta-" + secrets.token_hex(12)
BODY_LIMIT = 4096
PROMPT = "/api/v1/prompt"
ALLOWED_ORIGIN = "https://app.example.com"


# --------------------------------------------------------------------------- helpers


def keyed(**headers: str) -> dict[str, str]:
    return {"X-Api-Key": KEY_A, **headers}


# --------------------------------------------------------------------------- the keyed server


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Workdirs for the policy tests, with symlinks in and out of the allowed prefix."""
    base = tmp_path_factory.mktemp("secwork")
    allowed = base / "allowed"
    (allowed / "real").mkdir(parents=True)
    (allowed / "secret").mkdir()
    (allowed / "to-etc").symlink_to("/etc")
    (allowed / "to-secret").symlink_to(allowed / "secret")
    (allowed / "alias").symlink_to(allowed / "real")
    return base


@pytest.fixture(scope="module")
def srv(server_factory, work, tmp_path_factory):
    server = server_factory({"server": {
        "metrics_enabled": True,
        "max_request_body_bytes": BODY_LIMIT,
        "cors_allowed_origins": [ALLOWED_ORIGIN, "https://*.preview.example.com"],
        "cors_max_age": 600,
        "max_concurrent_runs": 1,
        "queue_timeout_secs": 1,
        # the compat routes run in the server's own directory, under the pytest base
        "allowed_workdir_prefixes": [str(work / "allowed"),
                                     str(tmp_path_factory.getbasetemp())],
        "blocked_workdir_prefixes": [str(work / "allowed" / "secret")],
    }}, extra_env={"CLINVK_API_KEYS": f" {KEY_A} , {KEY_B} ,,",
                   "FAKE_CLI_LOG": str(work / "fake.log")})
    yield server
    server.stop(timeout=10)


def test_public_paths_need_no_key(srv) -> None:
    for path in ("/health", "/openapi.json", "/docs", "/docs/static/swagger-ui/swagger-ui.css",
                 "/metrics"):
        resp = requests.get(srv.url(path), timeout=10)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
    spec = requests.get(srv.url("/openapi.json"), timeout=10).json()
    assert spec["security"] == [{"ApiKeyHeader": []}, {"BearerAuth": []}]
    assert spec["paths"]["/metrics"]["get"]["security"] == []


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/sessions"), ("GET", "/api/v1/backends"), ("POST", PROMPT),
    ("POST", "/api/v1/parallel"), ("DELETE", "/api/v1/sessions/abcd"),
    ("GET", "/openai/v1/models"), ("POST", "/anthropic/v1/messages"),
    # near misses of public paths and unknown paths are protected too
    ("GET", "/health/"), ("GET", "/healthz"), ("GET", "/openapi.yaml"), ("GET", "/docsx"),
    ("GET", "/metrics/x"), ("GET", "/nothing-here"), ("GET", "/docs/../api/v1/sessions"),
])
def test_everything_else_needs_a_key(srv, method, path) -> None:
    body = {"backend": "claude", "prompt": "hi"} if method == "POST" else None
    resp = requests.request(method, srv.url(path), json=body, timeout=10)
    assert resp.status_code == 401, resp.text
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "missing API key" in resp.text
    resp = requests.request(method, srv.url(path), json=body, timeout=10,
                            headers={"X-Api-Key": KEY_A + "x"})
    assert resp.status_code == 401 and "invalid API key" in resp.text
    assert KEY_A not in resp.text


def test_dot_segments_do_not_reach_public_paths(srv) -> None:
    import http.client

    for raw in ("/docs/static/../../api/v1/sessions", "/docs/static/%2e%2e/%2e%2e/api/v1/sessions",
                "/docs/../api/v1/sessions", "/health/../api/v1/sessions"):
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        try:
            conn.request("GET", raw)  # sent as is: http.client does not normalise paths
            resp = conn.getresponse()
            assert resp.status == 401, (raw, resp.status, resp.read()[:200])
        finally:
            conn.close()


def test_key_headers(srv) -> None:
    url = srv.url("/api/v1/sessions")
    ok = [
        {"X-Api-Key": KEY_A}, {"X-Api-Key": KEY_B}, {"Authorization": f"Bearer {KEY_A}"},
        {"Authorization": f"bearer   {KEY_B}"}, {"X-Api-Key": f"{KEY_A}  "},
        # either header may carry the valid key (the SDKs send one or the other)
        {"X-Api-Key": "wrong", "Authorization": f"Bearer {KEY_A}"},
    ]
    for headers in ok:
        assert requests.get(url, headers=headers, timeout=10).status_code == 200, headers
    bad = [
        {}, {"X-Api-Key": ""}, {"Authorization": f"Basic {KEY_A}"},
        {"Authorization": KEY_A}, {"Authorization": "Bearer"}, {"X-Api-Key": KEY_A[:-1]},
        {"X-Api-Key": KEY_A + KEY_B}, {"X-Api-Key": f"{KEY_A},{KEY_B}"},
        {"X-Api-Key": KEY_A.upper()},
    ]
    for headers in bad:
        assert requests.get(url, headers=headers, timeout=10).status_code == 401, headers


@pytest.mark.parametrize("path", ["/api/v1/sessions", "/openai/v1/models",
                                  "/anthropic/v1/messages"])
def test_refusals_use_the_format_of_the_route(srv, path) -> None:
    style = expected_style(srv, path)
    resp = requests.post(srv.url(path), json={"x": 1}, timeout=10)
    assert resp.status_code == 401
    body = resp.json()
    assert error_style(body) == style, body
    if style == "native":
        assert body["code"] == "unauthorized"
    elif style == "openai":
        assert body["error"]["code"] == "invalid_api_key"
    else:
        assert body["error"]["type"] == "authentication_error"
    big = requests.post(srv.url(path), data=b"{" + b" " * BODY_LIMIT + b"}", timeout=10,
                        headers=keyed(**{"Content-Type": "application/json",
                                         "anthropic-version": "2023-06-01"}))
    assert big.status_code == 413 and error_style(big.json()) == style, big.text


def test_cors_preflight_is_answered_before_auth(srv) -> None:
    sdk_headers = ("authorization, content-type, x-api-key, anthropic-version, "
                   "x-stainless-os, x-stainless-retry-count, x-request-id")
    for origin in (ALLOWED_ORIGIN, "https://pr-12.preview.example.com"):
        resp = requests.options(srv.url(PROMPT), timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": sdk_headers})
        assert resp.status_code == 200, resp.text
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        allowed = {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        assert allowed == {h.strip() for h in sdk_headers.split(",")}
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in resp.headers.get("Vary", "")
    # not configured: localhost (the default list is replaced), look-alike domains
    for origin in ("http://localhost:3000", "https://app.example.com.evil.io",
                   "https://evil.io/https://app.example.com", "https://x.preview.example.com.io"):
        resp = requests.options(srv.url(PROMPT), timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in resp.headers, origin


def test_cors_headers_on_refusals_so_browsers_can_read_them(srv) -> None:
    resp = requests.get(srv.url("/api/v1/sessions"), headers={"Origin": ALLOWED_ORIGIN},
                        timeout=10)
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    exposed = resp.headers["Access-Control-Expose-Headers"].lower()
    for name in ("x-request-id", "retry-after", "x-ratelimit-remaining"):
        assert name in exposed


def test_oversized_bodies_get_413_before_the_handler(srv, work) -> None:
    runs_before = len(fake_runs(work / "fake.log"))
    prompt = {"backend": "claude", "prompt": "x" * (BODY_LIMIT + 10),
              "workdir": str(work / "allowed" / "real")}
    resp = requests.post(srv.url(PROMPT), json=prompt, headers=keyed(), timeout=10)
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "request_too_large"
    assert str(BODY_LIMIT) in resp.json()["error"]
    assert resp.headers.get("Connection", "").lower() == "close"
    # not valid JSON, but the size is checked first
    resp = requests.post(srv.url(PROMPT), data=b"[" * (BODY_LIMIT + 1), headers=keyed(),
                         timeout=10)
    assert resp.status_code == 413
    # chunked: no Content-Length, the body is read up to the limit before the handler
    small = json.dumps({"backend": "claude", "prompt": "small", "dry_run": True,
                        "workdir": prompt["workdir"]})

    def chunks(total: int):
        body = (json.dumps(prompt) if total > BODY_LIMIT else small).encode()
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    resp = requests.post(srv.url(PROMPT), data=chunks(BODY_LIMIT * 2), timeout=10,
                         headers=keyed(**{"Content-Type": "application/json"}))
    assert resp.status_code == 413, resp.text
    resp = requests.post(srv.url(PROMPT), data=chunks(10), timeout=10,
                         headers=keyed(**{"Content-Type": "application/json"}))
    assert resp.status_code == 200, resp.text
    # exactly at the limit is fine (a dry run padded with spaces)
    exact = small[:-1] + " " * (BODY_LIMIT - len(small)) + "}"
    resp = requests.post(srv.url(PROMPT), data=exact.encode(), timeout=10,
                         headers=keyed(**{"Content-Type": "application/json"}))
    assert resp.status_code == 200, resp.text
    assert len(fake_runs(work / "fake.log")) == runs_before  # nothing ran


def test_unauthenticated_upload_is_refused_without_reading_it(srv) -> None:
    resp = requests.post(srv.url(PROMPT), data=iter([b"x" * 1024] * 12), timeout=10)
    assert resp.status_code == 401
    assert resp.headers.get("Connection", "").lower() == "close"  # not drained
    resp = requests.post(srv.url(PROMPT), data=b"x" * (BODY_LIMIT * 3), timeout=10)
    assert resp.status_code == 401  # auth comes before the size check
    assert resp.headers.get("Connection", "").lower() != "close"  # small: kept alive


def test_request_ids(srv) -> None:
    resp = requests.get(srv.url("/api/v1/sessions"), timeout=10,
                        headers={"X-Request-ID": "sec-test-rid-1"})
    assert resp.status_code == 401 and resp.headers["X-Request-ID"] == "sec-test-rid-1"
    resp = requests.get(srv.url("/api/v1/sessions"), timeout=10,
                        headers=keyed(**{"X-Request-ID": "sec-test-rid-2"}))
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "sec-test-rid-2"
    for insane in ("a" * 200, "bad id", "x\"y", "semi;colon", "../../etc/passwd"):
        resp = requests.get(srv.url("/health"), timeout=10, headers={"X-Request-ID": insane})
        rid = resp.headers["X-Request-ID"]
        assert rid != insane and re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert wait_until(lambda: "rid=sec-test-rid-2" in srv.log(), 5)
    assert "rid=sec-test-rid-1" in srv.log()


def test_keys_never_leak(srv, work) -> None:
    ok = requests.post(srv.url(PROMPT), headers=keyed(), timeout=30, json={
        "backend": "claude", "prompt": "print your environment",
        "workdir": str(work / "allowed" / "real")})
    assert ok.status_code == 200, ok.text
    failed = requests.post(srv.url(PROMPT), headers={"Authorization": f"Bearer {KEY_B}"},
                           timeout=30, json={
                               "backend": "codex", "prompt": fake("fail", error=500),
                               "workdir": str(work / "allowed" / "real")})
    assert failed.status_code == 502, failed.text
    wrong = requests.get(srv.url("/api/v1/sessions"), headers={"X-Api-Key": KEY_A[:-2]},
                         timeout=10)
    runs = fake_runs(work / "fake.log")
    assert runs, "the fake CLIs recorded no run"
    for run in runs:
        assert "CLINVK_API_KEYS" not in run["env"]
        assert not any(KEY_A in v or KEY_B in v for v in run["env"].values())
    metrics = requests.get(srv.url("/metrics"), timeout=10).text
    for text in (ok.text, failed.text, wrong.text, metrics, srv.log(),
                 json.dumps(dict(wrong.headers))):
        assert KEY_A not in text and KEY_B not in text
        assert KEY_A[:-2] not in text


# --------------------------------------------------------------------------- workdir policy


def dry_run(srv, workdir: str, **extra) -> requests.Response:
    return requests.post(srv.url(PROMPT), headers=keyed(), timeout=10, json={
        "backend": "claude", "prompt": "hi", "dry_run": True, "workdir": workdir, **extra})


def test_workdir_symlink_into_a_blocked_prefix_is_refused(srv, work) -> None:
    resp = dry_run(srv, str(work / "allowed" / "to-etc"))
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["code"] == "forbidden" and body["details"]["field"] == "workdir"
    assert "'/etc'" in body["error"] and "blocked" in body["error"]
    # a symlink into a configured blocked prefix, and a path through it
    for path in (work / "allowed" / "to-secret", work / "allowed" / "real" / ".." / "secret"):
        resp = dry_run(srv, str(path))
        assert resp.status_code == 403 and "blocked" in resp.json()["error"], resp.text


def test_workdir_rules(srv, work) -> None:
    resp = dry_run(srv, "/etc")  # the built-in list applies although a list is configured
    assert resp.status_code == 403 and "'/etc'" in resp.json()["error"]
    resp = dry_run(srv, "/usr/share")
    assert resp.status_code == 403 and "outside the allowed" in resp.json()["error"]
    resp = dry_run(srv, "relative/dir")
    assert resp.status_code == 400 and resp.json()["details"]["field"] == "workdir"
    resp = dry_run(srv, str(work / "allowed" / "alias"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["working_dir"] == str((work / "allowed" / "real").resolve())


def test_child_runs_in_the_resolved_workdir(srv, work) -> None:
    resp = requests.post(srv.url(PROMPT), headers=keyed(), timeout=30, json={
        "backend": "gemini", "prompt": "where am I", "ephemeral": True,
        "workdir": str(work / "allowed" / "alias")})
    assert resp.status_code == 200, resp.text
    real = str((work / "allowed" / "real").resolve())
    assert resp.json()["data"]["working_dir"] == real
    assert fake_runs(work / "fake.log")[-1]["cwd"] == real


@pytest.mark.parametrize("backend,fields", [
    ("claude", {"approval_mode": "none"}),
    ("codex", {"sandbox_mode": "full"}),
    ("claude", {"extra": ["--dangerously-skip-permissions"]}),
    ("claude", {"extra": ["--permission-mode", "bypassPermissions"]}),
    ("claude", {"extra": ["--permission-mode=bypassPermissions"]}),
    ("claude", {"extra": ["--add-dir", "/"]}),
    ("claude", {"extra": ["--settings", "/tmp/x.json"]}),
    ("codex", {"extra": ["--dangerously-bypass-approvals-and-sandbox"]}),
    ("codex", {"extra": ["-c", "sandbox_mode=danger-full-access"]}),
    ("codex", {"extra": ["--add-dir", "/"]}),
    ("gemini", {"extra": ["--yolo"]}),
    ("gemini", {"extra": ["-y"]}),
    ("gemini", {"extra": ["--approval-mode", "yolo"]}),
    ("gemini", {"extra": ["--include-directories", "/"]}),
    ("gemini", {"extra": ["--no-such-flag"]}),
])
def test_privilege_ceiling(srv, work, backend, fields) -> None:
    resp = requests.post(srv.url(PROMPT), headers=keyed(), timeout=10, json={
        "backend": backend, "prompt": "hi", "dry_run": True,
        "workdir": str(work / "allowed" / "real"), **fields})
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["code"] == "forbidden" and body["details"]["field"] in fields


@pytest.mark.parametrize("backend,extra", [
    ("claude", ["--allowedTools", "Read", "--effort", "low"]),
    ("codex", ["--ignore-rules"]),
    ("gemini", ["--allowed-mcp-server-names", "none"]),
])
def test_allowed_extra_flags_pass(srv, work, backend, extra) -> None:
    resp = requests.post(srv.url(PROMPT), headers=keyed(), timeout=10, json={
        "backend": backend, "prompt": "hi", "dry_run": True, "extra": extra,
        "workdir": str(work / "allowed" / "real")})
    assert resp.status_code == 200, resp.text
    assert all(flag in resp.json()["data"]["command"] for flag in extra)


# --------------------------------------------------------------------------- concurrency cap


def in_flight(srv) -> float:
    text = requests.get(srv.url("/metrics"), timeout=10).text
    return sum(float(m) for m in re.findall(
        r"^clinvk_backend_runs_in_flight\{[^}]*\} (\S+)$", text, re.M))


def test_saturation_is_503_with_retry_after(srv, work) -> None:
    workdir = str(work / "allowed" / "real")
    results: dict[str, requests.Response] = {}

    def slow() -> None:
        results["slow"] = requests.post(srv.url(PROMPT), headers=keyed(), timeout=60, json={
            "backend": "claude", "prompt": fake("slow", delay=5), "workdir": workdir,
            "ephemeral": True})

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert wait_until(lambda: in_flight(srv) == 1, 15), "the slow run never started"
        started = time.monotonic()
        resp = requests.post(srv.url(PROMPT), headers=keyed(), timeout=30, json={
            "backend": "claude", "prompt": "second", "workdir": workdir, "ephemeral": True})
        waited = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        assert resp.json()["code"] == "server_saturated"
        assert int(resp.headers["Retry-After"]) >= 1
        assert waited >= 0.9  # it queued for server.queue_timeout_secs first
        if "/anthropic/v1" in served_prefixes(srv):
            resp = requests.post(srv.url("/anthropic/v1/messages"), timeout=30,
                                 headers=keyed(**{"anthropic-version": "2023-06-01"}),
                                 json={"model": "claude", "max_tokens": 10,
                                       "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 529, resp.text
            assert resp.json()["error"]["type"] == "overloaded_error"
    finally:
        thread.join(60)
    assert results["slow"].status_code == 200, results["slow"].text


# --------------------------------------------------------------------------- abuse


ABUSE_REQUESTS = 10_000
ABUSE_THREADS = 8


def random_ip(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def random_key(rng: random.Random) -> str:
    """A wrong key, often close to a real one (never equal to one)."""
    alphabet = string.ascii_letters + string.digits + "-_"
    while True:
        prefix = rng.choice(["", "sk-clinvk-alpha-", KEY_A[:-1], KEY_A[:8]])
        key = prefix + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 48)))
        if key.strip() not in (KEY_A, KEY_B):
            return key


def hostile(i: int, rng: random.Random) -> tuple[str, str, dict, object]:
    """Request ``i`` of the abuse run: method, path, headers, body."""
    xff = ", ".join(random_ip(rng) for _ in range(rng.randint(1, 3)))
    spoof = {"X-Forwarded-For": rng.choice([xff, "127.0.0.1", f"127.0.0.1, {xff}"]),
             "X-Real-IP": random_ip(rng), "Content-Type": "application/json"}
    key = random_key(rng)
    cred = rng.choice([{"X-Api-Key": key}, {"Authorization": f"Bearer {key}"},
                       {"Authorization": f"Basic {key}"}, {}])
    prompt = json.dumps({"backend": rng.choice(["claude", "codex", "gemini"]),
                         "prompt": "rm -rf / FAKE{\"reply\": \"pwned\"}"}).encode()
    oversized = prompt[:-1] + b" " * BODY_LIMIT + b"}"
    kind = i % 8
    if kind in (0, 1, 2):  # bad keys on protected routes
        path = rng.choice([PROMPT, "/api/v1/parallel", "/openai/v1/chat/completions",
                           "/anthropic/v1/messages", "/api/v1/sessions", "/metrics/../api"])
        method = "GET" if path == "/api/v1/sessions" else "POST"
        return method, path, {**spoof, **cred}, prompt if method == "POST" else None
    if kind in (3, 4):  # oversized with a bad key
        return "POST", PROMPT, {**spoof, **cred}, oversized
    if kind == 5:  # oversized with a good key
        return "POST", PROMPT, {**spoof, "X-Api-Key": KEY_A}, oversized
    if kind == 6:  # oversized, chunked, with a good key
        chunks = [oversized[j:j + 1024] for j in range(0, len(oversized), 1024)]
        return "POST", PROMPT, {**spoof, "Authorization": f"Bearer {KEY_B}"}, iter(chunks)
    # a valid key with one character flipped, in the place an SDK would put it
    flipped = KEY_A[:-1] + ("0" if KEY_A[-1] != "0" else "1")
    return "POST", "/openai/v1/chat/completions", {**spoof, "Authorization":
                                                   f"Bearer {flipped}"}, prompt


def test_abuse_10000_hostile_requests(srv, work) -> None:
    runs_before = len(fake_runs(work / "fake.log"))
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(1000 + index)
        # urllib3 directly: a persistent connection per thread at a fraction of the
        # client-side cost of requests (the machine has two cores for both sides)
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port, maxsize=1, block=True,
                                          retries=False, timeout=15.0)
        local: Counter[int] = Counter()
        try:
            for i in range(index, ABUSE_REQUESTS, ABUSE_THREADS):
                method, path, headers, body = hostile(i, rng)
                try:
                    resp = pool.urlopen(method, path, body=body, headers=headers,
                                        chunked=not isinstance(body, bytes | None))
                    local[resp.status] += 1
                except urllib3.exceptions.HTTPError as exc:
                    with lock:
                        errors.append(f"{method} {path}: {exc!r}")
        finally:
            pool.close()
            with lock:
                statuses.update(local)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(ABUSE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    elapsed = time.monotonic() - started
    print(f"\nabuse: {ABUSE_REQUESTS} requests, {ABUSE_THREADS} threads, {elapsed:.1f} s "
          f"({ABUSE_REQUESTS / elapsed:.0f} req/s); statuses {dict(statuses)}")
    assert not errors, errors[:5]
    assert sum(statuses.values()) == ABUSE_REQUESTS
    assert set(statuses) <= {401, 413}, statuses  # none got through, none is a 5xx
    assert statuses[413] >= ABUSE_REQUESTS // 8 * 2 - 2
    # nothing ran, the server is up, its worker never restarted
    assert len(fake_runs(work / "fake.log")) == runs_before
    assert srv.proc.poll() is None
    assert requests.get(srv.url("/health"), timeout=10).status_code == 200
    assert requests.get(srv.url("/api/v1/sessions"), headers=keyed(),
                        timeout=10).status_code == 200
    assert srv.log().count("Booting worker") == 1


# --------------------------------------------------------------------------- gopass


GOPASS = """#!/bin/sh
# test stand-in for gopass: prints the secret file, or fails like a locked store
echo "$*" >> "$FAKE_GOPASS_CALLS"
if [ "$1 $2" != "show --password" ]; then echo "usage" >&2; exit 64; fi
if [ -n "$FAKE_GOPASS_FAIL" ]; then echo "gpg: decryption failed: No secret key" >&2; exit 1; fi
cat "$FAKE_GOPASS_SECRET"
"""


def gopass_server(server_factory, tmp: Path, *, fail: bool, metrics_require_auth: bool):
    bindir = tmp / "bin"
    bindir.mkdir(parents=True)
    (bindir / "gopass").write_text(GOPASS)
    (bindir / "gopass").chmod(0o755)
    (tmp / "secret").write_text("gp-key-one,gp-key-two\n")
    env = {"PATH": f"{bindir}{os.pathsep}{clean_environ(tmp, tmp)['PATH']}",
           "FAKE_GOPASS_CALLS": str(tmp / "calls"), "FAKE_GOPASS_SECRET": str(tmp / "secret")}
    if fail:
        env["FAKE_GOPASS_FAIL"] = "1"
    return server_factory({"server": {"api_keys_gopass_path": "clinvk/api-keys",
                                      "metrics_enabled": True,
                                      "metrics_require_auth": metrics_require_auth}},
                          extra_env=env)


def test_gopass_keys(server_factory, tmp_path) -> None:
    server = gopass_server(server_factory, tmp_path, fail=False, metrics_require_auth=True)
    try:
        url = server.url("/api/v1/sessions")
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, headers={"X-Api-Key": "gp-key-three"},
                            timeout=10).status_code == 401
        for _ in range(5):
            for key in ("gp-key-one", "gp-key-two"):
                resp = requests.get(url, headers={"Authorization": f"Bearer {key}"},
                                    timeout=10)
                assert resp.status_code == 200, resp.text
        # /metrics is private here; /health stays public
        assert requests.get(server.url("/metrics"), timeout=10).status_code == 401
        assert requests.get(server.url("/metrics"), headers={"X-Api-Key": "gp-key-one"},
                            timeout=10).status_code == 200
        assert requests.get(server.url("/health"), timeout=10).status_code == 200
        calls = (tmp_path / "calls").read_text().splitlines()
        assert calls == ["show --password clinvk/api-keys"]  # read once, then cached
        assert "gp-key" not in server.log()
    finally:
        server.stop(timeout=10)


def test_gopass_failure_fails_closed(server_factory, tmp_path) -> None:
    server = gopass_server(server_factory, tmp_path, fail=True, metrics_require_auth=False)
    try:
        for headers in ({}, {"X-Api-Key": "gp-key-one"}, {"Authorization": "Bearer anything"}):
            resp = requests.get(server.url("/api/v1/sessions"), headers=headers, timeout=10)
            assert resp.status_code in (401, 503), resp.text
            if headers:
                assert resp.status_code == 503 and resp.json()["code"] == "auth_unavailable"
                assert int(resp.headers["Retry-After"]) >= 1
        resp = requests.post(server.url(PROMPT), headers={"X-Api-Key": "gp-key-one"},
                             json={"backend": "claude", "prompt": "hi", "dry_run": True},
                             timeout=10)
        assert resp.status_code == 503
        assert requests.get(server.url("/health"), timeout=10).status_code == 200
        assert requests.get(server.url("/metrics"), timeout=10).status_code == 200
        # the failure is retried after a pause, not on every request
        assert len((tmp_path / "calls").read_text().splitlines()) == 1
        assert "decryption failed" in server.log()
    finally:
        server.stop(timeout=10)


# --------------------------------------------------------------------------- bind refusal


def serve(tmp: Path, host: str, config: dict, env: dict[str, str] | None = None,
          wait: float = 20.0) -> tuple[subprocess.Popen, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    full_env = clean_environ(tmp, tmp)
    full_env.update(env or {})
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clinvk.cli", "--config", str(tmp / "config.yaml"),
             "serve", "--host", host, "--port", "0"], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(REPO),
            start_new_session=True)
    return proc, log_path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5)


def test_non_loopback_bind_without_keys_is_refused(tmp_path) -> None:
    proc, log_path = serve(tmp_path / "refused", "0.0.0.0", {})
    try:
        assert proc.wait(30) == 2
    finally:
        stop(proc)
    out = log_path.read_text()
    assert "refusing to listen on 0.0.0.0 without API keys" in out
    assert "allow_unauthenticated_remote" in out
    assert "Listening at" not in out and "starting on" not in out


@pytest.mark.parametrize("case", ["keys", "gopass", "allowed"])
def test_non_loopback_bind_is_allowed_with_keys_or_the_setting(tmp_path, case) -> None:
    config: dict = {}
    env: dict[str, str] = {}
    if case == "keys":
        env["CLINVK_API_KEYS"] = KEY_A
    elif case == "gopass":
        config = {"server": {"api_keys_gopass_path": "clinvk/keys"}}
    else:
        config = {"server": {"allow_unauthenticated_remote": True}}
    proc, log_path = serve(tmp_path, "0.0.0.0", config, env)
    try:
        assert wait_until(lambda: "starting on http://0.0.0.0:" in log_path.read_text()
                          or proc.poll() is not None, 30), log_path.read_text()
        match = re.search(r"starting on http://0\.0\.0\.0:(\d+)", log_path.read_text())
        assert match, log_path.read_text()
        health = f"http://127.0.0.1:{match.group(1)}/health"
        assert wait_until(lambda: _status(health) == 200, 20)
        if case == "allowed":
            assert "WITHOUT API keys" in log_path.read_text()
    finally:
        stop(proc)


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def test_check_bind_addresses() -> None:
    from clinvk.core.config import load_config
    from clinvk.core.errors import ConfigError
    from clinvk.server.security import check_bind, exposed_addresses

    config = load_config(env={"CLINVK_HOME": "/nonexistent"})
    local = [("127.0.0.1", 8080), ("::1", 8080), ("localhost", 80), ("127.8.9.10", 1),
             "/run/clinvk.sock"]
    assert exposed_addresses(local) == []
    assert exposed_addresses([("0.0.0.0", 1), ("::", 1), ("", 1), ("10.1.2.3", 1),
                              "fd://3"]) == ["0.0.0.0", "::", "*", "10.1.2.3", "fd://3"]
    check_bind(local, config, environ={})
    with pytest.raises(ConfigError, match="refusing to listen on ::"):
        check_bind([("::", 8080)], config, environ={})
    with pytest.raises(ConfigError):  # set but empty is no key at all
        check_bind([("0.0.0.0", 8080)], config, environ={"CLINVK_API_KEYS": " , "})
    check_bind([("0.0.0.0", 8080)], config, environ={"CLINVK_API_KEYS": "k"})
    check_bind([("0.0.0.0", 8080)], config, environ={"CLINVK_API_KEYS_GOPASS_PATH": "a/b"})
    check_bind([("0.0.0.0", 8080)],
               config.with_overrides({"server.allow_unauthenticated_remote": True}),
               environ={})
