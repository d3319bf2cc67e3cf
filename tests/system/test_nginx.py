"""nginx in front of clinvk: the config of docs/deployment.md, for real.

The test reads the ``nginx`` block under "nginx in front" in ``docs/deployment.md`` and
runs it unchanged except for what cannot be copied to a test machine: the upstream port,
the ``listen`` address (a free loopback port) and the certificate paths (a throw-away
self-signed certificate). So the documented config is the tested config.

Debian's ``nginx`` package is installed with apt when missing (CI runs as root on a fresh
machine); a failed install fails the run under ``CI=true`` and skips loudly elsewhere.
nginx runs as a non-daemon child of the test on a free loopback port and is stopped at
the end of the module, as is the gateway behind it.

What it proves:

* NDJSON and both SSE APIs pass through unbuffered: the first text delta reaches the
  client while the backend is still paused after printing it;
* client IPs arrive through the trusted proxy: with ``server.trusted_proxies`` set to
  nginx's address, the rate limiter buckets and the access log use the client's address
  (clients connect from their own 127/8 source addresses), and a client-supplied
  ``X-Forwarded-For`` cannot spoof it;
* nginx's ``$request_id`` arrives as the request id the gateway answers and logs with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from support.fakes import REPO, fake
from support.procs import wait_until
from support.services import free_port, install_turn

DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
BURST = 4
PAUSE = 3.0


# --------------------------------------------------------------------------- nginx install


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None)


def _install_nginx() -> str | None:
    """``apt-get install nginx``; returns why it failed, or None.

    Services must not start during the install (the package would start a system nginx
    on port 80 that outlives the tests): a ``policy-rc.d`` that forbids it is put in
    place for the install when the machine has none. The install waits for the machine's
    installer turn and is skipped when another test process installed nginx meanwhile.
    """
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "installing needs root"
    with install_turn():
        return None if _nginx_binary() else _apt_get_nginx()


def _apt_get_nginx() -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    placed = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# tests/system/test_nginx.py: no services during install\n"
                          "exit 101\n")
        policy.chmod(0o755)
        placed = True
    try:
        lock = ["-o", "DPkg::Lock::Timeout=600"]  # an apt outside the tests may hold it
        for cmd in (["apt-get", *lock, "update"],
                    ["apt-get", *lock, "install", "-y", "--no-install-recommends", "nginx"]):
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                      env=env, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{' '.join(cmd)}: {exc}"
            if proc.returncode != 0:
                return f"{' '.join(cmd)} exited {proc.returncode}: " + \
                    proc.stderr.decode(errors="replace")[-500:]
    finally:
        if placed:
            policy.unlink(missing_ok=True)
    return None


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = _nginx_binary()
    if binary is None:
        reason = _install_nginx()
        binary = _nginx_binary()
        if binary is None:
            message = f"nginx is missing and could not be installed: {reason or 'not found'}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            warnings.warn(message, stacklevel=1)
            pytest.skip(message)
    return binary


# --------------------------------------------------------------------------- the config


def documented_config() -> str:
    """The nginx block of docs/deployment.md, verbatim."""
    text = DEPLOYMENT_DOC.read_text()
    section = text.split("## nginx in front", 1)[1]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match, "docs/deployment.md has no nginx block under 'nginx in front'"
    return match.group(1)


def _substitute(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"expected exactly one {pattern!r} in the documented config"
    return new


def templated_config(upstream_port: int, listen_port: int, cert: Path, key: Path) -> str:
    """The documented block with this machine's ports and certificate; nothing else."""
    text = documented_config()
    text = _substitute(text, r"^(\s*server\s+)127\.0\.0\.1:8080;",
                       rf"\g<1>127.0.0.1:{upstream_port};")
    text = _substitute(text, r"^(\s*listen\s+)443 ssl;", rf"\g<1>127.0.0.1:{listen_port} ssl;")
    text = _substitute(text, r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};")
    text = _substitute(text, r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};")
    return text


def main_config(directory: Path, include: Path) -> str:
    """nginx.conf around the documented block: foreground, files in ``directory``."""
    temp = {name: directory / name for name in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                "scgi")}
    for path in temp.values():
        path.mkdir(mode=0o777, exist_ok=True)
        path.chmod(0o777)  # nginx workers run as an unprivileged user
    return f"""daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {include};
}}
"""


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "agents.pem", directory / "agents.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make a test certificate")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
    return cert, key



class Nginx:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, directory: Path,
                 cert: Path) -> None:
        self.proc = proc
        self.port = port
        self.directory = directory
        self.cert = cert

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # master and workers, whatever is left
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


@pytest.fixture(scope="module")
def gateway(server_factory) -> Iterator[Any]:
    server = server_factory({"server": {
        "trusted_proxies": ["127.0.0.1/32"],
        "rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": BURST,
    }}, args=("--port", "0"))
    yield server
    server.stop(timeout=10)


@pytest.fixture(scope="module")
def nginx(nginx_binary: str, gateway: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Nginx]:
    directory = tmp_path_factory.mktemp("nginx")
    directory.chmod(0o755)
    cert, key = _self_signed(directory)
    port = free_port()
    site = directory / "clinvk.conf"
    site.write_text(templated_config(gateway.port, port, cert, key))
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, site))
    check = subprocess.run([nginx_binary, "-t", "-p", str(directory), "-e", "stderr",
                            "-c", str(conf)], capture_output=True, text=True, timeout=30,
                           check=False)
    assert check.returncode == 0, check.stderr
    with open(directory / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen([nginx_binary, "-p", str(directory), "-e", "stderr",
                                 "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    server = Nginx(proc, port, directory, cert)

    def listening() -> bool:
        assert proc.poll() is None, server.log()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        assert wait_until(listening, timeout=15), server.log()
        yield server
    finally:
        server.stop()


def client(nginx: Nginx, source_ip: str) -> requests.Session:
    """HTTPS to nginx from ``source_ip`` (any 127/8 address), verifying its certificate."""

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = (source_ip, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("https://", SourceAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
    session.verify = str(nginx.cert)
    session.trust_env = False  # REQUESTS_CA_BUNDLE & co. would replace the verify above
    return session


# --------------------------------------------------------------------------- tests


def test_the_tested_config_is_the_documented_one() -> None:
    block = documented_config()
    assert "proxy_buffering off;" in block and "proxy_http_version 1.1;" in block
    templated = templated_config(1111, 2222, Path("/c.pem"), Path("/c.key"))
    changed = [(a, b) for a, b in zip(block.splitlines(), templated.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 4, changed  # upstream, listen, certificate, key: nothing else


STREAMS = {
    # API: (path, body, headers, bytes that only appear with the first text delta)
    "ndjson": ("/api/v1/prompt", {"backend": "claude", "output_format": "stream-json",
                                  "ephemeral": True}, {}, b'"type":"message"'),
    "openai-sse": ("/openai/v1/chat/completions", {"model": "claude", "stream": True}, {},
                   b'"content":"Hello'),
    "anthropic-sse": ("/anthropic/v1/messages", {"model": "gemini", "max_tokens": 64,
                                                 "stream": True}, ANTHROPIC_HEADERS,
                      b'"text_delta"'),
}


@pytest.mark.parametrize("kind", list(STREAMS))
def test_streams_pass_through_unbuffered(nginx: Nginx, kind: str) -> None:
    path, body, headers, marker = STREAMS[kind]
    prompt = fake(f"stream via nginx ({kind})", pause_after_first=PAUSE)
    body = dict(body)
    if kind == "ndjson":
        body["prompt"] = prompt
    else:
        body["messages"] = [{"role": "user", "content": prompt}]
    session = client(nginx, f"127.0.0.{20 + list(STREAMS).index(kind)}")
    started = time.monotonic()
    with session.post(nginx.url(path), json=body, headers=headers, stream=True,
                      timeout=30) as resp:
        assert resp.status_code == 200, resp.text
        # nginx consumes the gateway's X-Accel-Buffering: no (it is not passed on).
        assert "X-Accel-Buffering" not in resp.headers
        received = b""
        first_text_at = None
        for chunk in resp.iter_content(chunk_size=None):
            received += chunk
            if first_text_at is None and marker in received:
                first_text_at = time.monotonic() - started
        done_at = time.monotonic() - started
    assert first_text_at is not None, received[-500:]
    print(f"\n[{kind}] first text after {first_text_at:.2f} s, stream ended after "
          f"{done_at:.2f} s (backend paused {PAUSE:g} s after its first chunk)")
    # The backend sleeps PAUSE seconds right after its first text chunk: that chunk must
    # have reached the client through nginx long before the stream ended.
    assert done_at >= PAUSE, (first_text_at, done_at)
    assert done_at - first_text_at >= PAUSE - 1.0, (first_text_at, done_at)
    tail = received.decode()
    if kind == "ndjson":
        assert json.loads(tail.strip().splitlines()[-1])["type"] == "done"
    elif kind == "openai-sse":
        assert tail.rstrip().endswith("data: [DONE]")
    else:
        assert "event: message_stop" in tail


def _access_lines(gateway: Any, rid: str) -> list[str]:
    return [line for line in gateway.log().splitlines() if f"rid={rid}" in line]


def test_client_ip_arrives_through_the_trusted_proxy(nginx: Nginx, gateway: Any) -> None:
    alice, bob = client(nginx, "127.0.0.31"), client(nginx, "127.0.0.32")
    url = nginx.url("/api/v1/sessions")
    # Alice spends her whole bucket; if the gateway saw nginx's address for everyone,
    # Bob would be limited with her.
    statuses = [alice.get(url, timeout=10).status_code for _ in range(BURST + 1)]
    assert statuses == [200] * BURST + [429], statuses
    limited = alice.get(url, timeout=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    # Bob claims to be Alice: nginx appends his real address and only that hop counts.
    resp = bob.get(url, headers={"X-Forwarded-For": "127.0.0.31"}, timeout=10)
    assert resp.status_code == 200, resp.text

    # The gateway answers with nginx's $request_id and logs the client, not nginx.
    rid = resp.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert wait_until(lambda: _access_lines(gateway, rid), timeout=5), gateway.log()[-2000:]
    line = _access_lines(gateway, rid)[0]
    assert line.startswith('127.0.0.32 "GET /api/v1/sessions'), line
    rid = limited.headers["X-Request-ID"]
    assert wait_until(lambda: _access_lines(gateway, rid), timeout=5)
    assert _access_lines(gateway, rid)[0].startswith('127.0.0.31 "GET /api/v1/sessions')
