"""What every benchmark shares: a real ``clinvk serve`` on loopback, the fake CLIs, the
machine description, percentiles, a tiny keep-alive HTTP client and /proc readings.

The fake CLIs are Python scripts (``tests/fakes/bin``); their start-up time dominates a
direct run. Both paths (direct and through the gateway) therefore start them the same
way: a ``python3`` wrapper first on ``PATH`` runs this interpreter with ``-S`` (no
site-packages hooks), as ``tests/fakes/README.md`` describes.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE_BIN = REPO / "tests" / "fakes" / "bin"
RESULTS = REPO / "bench" / "results"
BANNER_RE = re.compile(r"starting on http://([^\s/]+):(\d+)")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- numbers


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def pcts(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load": os.getloadavg(),
        "mem_gib": os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30,
    }


def describe_machine(m: dict[str, Any]) -> str:
    load = m["load"]
    return (f"`nproc` = {m['nproc']}, {m['cpu']} ({m['arch']}), {m['mem_gib']:.0f} GiB, "
            f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}; load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) when it started")


# --------------------------------------------------------------------------- environment


def bench_env(root: Path) -> dict[str, str]:
    """An environment for the server and the direct runs: fakes first on PATH, fast python."""
    pydir = root / "python"
    pydir.mkdir(exist_ok=True)
    wrapper = pydir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
    wrapper.chmod(0o755)
    for name in ("home", "clinvk-home", "work", "fake-state"):
        (root / name).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLINVK_", "FAKE_CLI", "PROMETHEUS_", "CLAUDE_", "CODEX_",
                                "GEMINI_", "ANTHROPIC_", "OPENAI_", "PYTHONDONTWRITEBYTECODE"))}
    env.update(PATH=os.pathsep.join((str(pydir), str(FAKE_BIN), env.get("PATH", ""))),
               HOME=str(root / "home"), CLINVK_HOME=str(root / "clinvk-home"),
               FAKE_CLI_STATE_DIR=str(root / "fake-state"), FAKE_CLI_MAX_LIFETIME="300",
               PYTHONPATH=os.environ.get("BENCH_CLINVK_SRC") or str(REPO))
    return env


# --------------------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (each thread has its own list)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself (not of its reaped children)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def thread_count(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- server


class Server:
    """``clinvk serve --port 0`` as a subprocess (its own process group), ready on return."""

    def __init__(self, root: Path, env: dict[str, str], config: dict | None = None, *,
                 workers: int = 1, threads: int = 32, name: str = "server") -> None:
        self.root = root
        config_path = root / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config or {}))
        self.log_path = root / f"{name}.log"
        self.workers = workers
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clinvk.cli", "--config", str(config_path), "serve",
                 "--port", "0", "--workers", str(workers), "--threads", str(threads)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=str(root / "work"), start_new_session=True)
        deadline = time.monotonic() + 60
        self.host, self.port = "", 0
        while time.monotonic() < deadline and not self.port:
            if self.proc.poll() is not None:
                raise SystemExit("clinvk serve exited:\n" + self.log_path.read_text())
            match = BANNER_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
            time.sleep(0.05)
        while time.monotonic() < deadline:
            try:
                with Client(self) as client:
                    if client.request("GET", "/health")[0] == 200 and \
                            len(self.worker_pids()) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("clinvk serve did not become ready:\n" + self.log_path.read_text())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def workers_rss(self) -> int:
        return sum(rss_bytes(p) for p in self.worker_pids())

    def workers_cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.worker_pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


THIN_APP = """
import subprocess

from flask import Flask, request

app = Flask("thin")


@app.post("/run")
def run():
    body = request.get_json()
    proc = subprocess.Popen(body["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=body["cwd"], start_new_session=True)
    out, _ = proc.communicate(body["stdin"].encode())
    return {"exit_code": proc.returncode, "output": out.decode()}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def gunicorn(target: str, directory: Path, env: dict[str, str] | None = None
             ) -> tuple[subprocess.Popen, int]:
    """``target`` (``module:app`` in ``directory``) on gunicorn gthread, 1 worker, 32
    threads (clinvk serve's defaults); returns the process and its port once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "32", "-w", "1",
         "-b", f"127.0.0.1:{port}", target],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    wait_for_port(port)
    return proc, port


class ThinGateway:
    """The thinnest gateway the design card's stack allows, as a yardstick: gunicorn
    gthread serving a one-route Flask app (``POST /run``) that runs a JSON-given argv with
    ``Popen`` + ``communicate`` exactly like bench_gateway.py's direct path and answers
    ``{"exit_code", "output"}``: no validation, policy, sessions, parsing or hooks. What it
    adds over the direct run is the stack's floor (HTTP over loopback, gunicorn's poller
    to pool hand-off, Flask dispatch), which no code of clinvk can remove."""

    host = "127.0.0.1"

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        (root / "thin_app.py").write_text(THIN_APP)
        self.proc, self.port = gunicorn("thin_app:app", root, env)

    def call(self, invocation: dict[str, Any]):  # -> Callable[[dict], None]
        def run(state: dict) -> None:
            client = state.get("thin_client")
            if client is None:
                client = state["thin_client"] = Client(self)  # type: ignore[arg-type]
            status, data = client.request("POST", "/run", invocation)
            assert status == 200 and json.loads(data)["exit_code"] == 0, (status, data[:300])

        return run

    def __enter__(self) -> ThinGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


class Client:
    """One keep-alive HTTP/1.1 connection (``http.client``: little client CPU per request,
    which matters when the client shares the two cores with the server)."""

    def __init__(self, server: Server, timeout: float = 120) -> None:
        self.server = server
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.CannotSendRequest):
                # the server closed an idle keep-alive connection: reconnect once
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.server.host, self.server.port,
                                                       timeout=self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stream(self, method: str, path: str, body: Any,
               headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        """Send a request and return the response with its body unread (read it by lines)."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=json.dumps(body).encode(), headers=hdrs)
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
