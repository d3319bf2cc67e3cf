"""Harness of the real-CLI suite: a World per test, run helpers and process inspection."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from stubs import STUBS, StubServer

from clinvk.core.config import load_config
from clinvk.core.engine import Engine, PromptRequest, RunResult
from clinvk.core.events import Event
from clinvk.core.store.sqlite import SqliteStore
from realcli.sandbox import Sandbox, clean_environ, make_sandbox, write_clinvk_config

BACKENDS = ("claude", "codex", "gemini")
# gemini: a model on every run skips its model-router call (and that call's own retries).
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash"}
MARKER_ENV = "REALCLI_SANDBOX"


# ------------------------------------------------------------------------------ processes


def processes_of(markers: list[str], extra_needles: list[str] = ()) -> list[str]:
    """Live processes started inside the given sandboxes (by inherited env or command line).

    The environment marker reaches every descendant that inherits the CLI's environment;
    the command-line needles (sandbox paths, the stubs' unique sleep commands) catch the
    ones that got a fresh environment. Zombies do not count: they hold no resources but a
    pid and their parent reaps them.
    """
    env_needles = [f"{MARKER_ENV}={m}".encode() for m in markers]
    needles = [n.encode() for n in (*markers, *extra_needles)]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            if state == b"Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    environ = fh.read().split(b"\0")
            except PermissionError:
                environ = []
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if any(n in environ for n in env_needles) or any(n in cmdline for n in needles):
            args = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {args}")
    return found


def ps_lines(needle: str) -> list[str]:
    """``ps`` lines whose command contains ``needle`` (the check a human would run)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except FileNotFoundError:  # no procps: fall back to /proc
        return processes_of([], [needle])
    return [line for line in out.splitlines()
            if needle in line and " Z" not in line and "ps -eo" not in line]


def kill_all(lines: list[str]) -> None:
    for line in lines:
        pid = int(line.split(":", 1)[0].split()[0])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------- serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clinvk_command() -> list[str]:
    """The `clinvk` console script of this interpreter, or its entry point via -c."""
    script = Path(sys.executable).parent / "clinvk"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from clinvk.cli import main; sys.argv[0] = "
            "'clinvk'; main()"]


def serve_unavailable() -> str | None:
    """Why `clinvk serve` cannot be used, or None."""
    try:
        proc = subprocess.run([*clinvk_command(), "serve", "--help"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=clean_environ(), check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"clinvk serve --help could not run: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return f"clinvk serve --help failed: {' '.join(tail)}"
    return None


class Server:
    """A real `clinvk --config FILE serve` process (gunicorn) on loopback."""

    def __init__(self, config: Path, port: int, clinvk_home: Path, log: Path,
                 cwd: Path) -> None:
        self.config = config
        self.cwd = cwd
        self.port = port
        self.clinvk_home = clinvk_home
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 60.0) -> None:
        env = {**clean_environ(), "CLINVK_HOME": str(self.clinvk_home)}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*clinvk_command(), "--config", str(self.config), "serve", "--host",
                 "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clinvk serve exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                requests.get(self.url + "/health", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"clinvk serve did not answer within {wait:g} s:\n"
                           + self.log_tail())

    def stop(self) -> None:
        """SIGTERM (graceful: running children are terminated), SIGKILL if it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------- world


@dataclass
class Run:
    """One clinvk run through the engine: its result and every unified event it emitted."""

    result: RunResult
    events: list[Event] = field(default_factory=list)

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


class World:
    """Stubs, sandboxes, clinvk config and engine for one test."""

    def __init__(self, root: Path, binaries: dict[str, Path]) -> None:
        self.root = root
        self.binaries = binaries
        self.workdir = root / "work"
        self.workdir.mkdir(parents=True)
        self.stubs: dict[str, StubServer] = {}
        self.boxes: dict[str, Sandbox] = {}
        for name in BACKENDS:
            stub = STUBS[name]().start()
            self.stubs[name] = stub
            box = make_sandbox(name, root / name, stub.url, workdir=self.workdir)
            box.env[MARKER_ENV] = str(box.root)
            self.boxes[name] = box
        self.clinvk_home = root / "clinvk-home"
        self.clinvk_home.mkdir()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._store: SqliteStore | None = None
        self.servers: list[Server] = []

    # -- clinvk -------------------------------------------------------------------------------

    def write_config(self, *, server: dict[str, Any] | None = None,
                     timeout_secs: int = 90) -> Path:
        return write_clinvk_config(self.root / "clinvk.yaml", self.boxes, self.binaries,
                                   models=DEFAULT_MODELS, server=server,
                                   timeout_secs=timeout_secs)

    @property
    def store(self) -> SqliteStore:
        with self._lock:
            if self._store is None:
                self._store = SqliteStore(self.clinvk_home / "sessions.db")
            return self._store

    @property
    def engine(self) -> Engine:
        """One engine per world, also when several threads ask first at once (two engines
        built from a config file another thread was rewriting once made a backend look
        missing: the flaky "gemini not found")."""
        store = self.store
        with self._lock:
            if self._engine is None:
                config = load_config(self.write_config(), env={})
                self._engine = Engine(config, store)
            return self._engine

    def request(self, backend: str | None, prompt: str, **kw: Any) -> PromptRequest:
        kw.setdefault("workdir", str(self.workdir))
        return PromptRequest(prompt=prompt, backend=backend, **kw)

    def run(self, backend: str | None, prompt: str, **kw: Any) -> Run:
        """Prepare and execute through the engine, collecting the unified events."""
        run = Run(result=None)  # type: ignore[arg-type]
        prepared = self.engine.prepare(self.request(backend, prompt, **kw))
        run.result = self.engine.execute(prepared, run.events.append)
        return run

    # -- inspection ---------------------------------------------------------------------------

    def markers(self) -> list[str]:
        return [str(box.root) for box in self.boxes.values()]

    def leftovers(self) -> list[str]:
        sleeps = [stub.sleep_command for stub in self.stubs.values()]
        return processes_of(self.markers(), sleeps)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        for stub in self.stubs.values():
            stub.stop()
        if self._store is not None:
            self._store.close()

    def close_and_check(self) -> list[str]:
        """Stop everything; return what was left behind (and kill it)."""
        self.close()
        # A CLI killed by a timeout may need a moment for its group to disappear.
        deadline = time.monotonic() + 3
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.leftovers()
        kill_all(left)
        problems = []
        if left:
            problems.append("processes of this test's CLIs were left running:\n"
                            + "\n".join(left))
        if any(s.running for s in self.stubs.values()):
            problems.append("a stub server is still running")
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                problems.append(f"clinvk serve (pid {server.proc.pid}) is still running")
        return problems

    # -- clinvk serve -------------------------------------------------------------------------

    def serve(self, **server_config: Any) -> Server:
        """Start a real `clinvk serve` on a free loopback port with this world's config."""
        port = free_port()
        config = self.write_config(server={"host": "127.0.0.1", "port": port, "workers": 1,
                                           "threads": 8, **server_config})
        # Routes without a workdir field (OpenAI/Anthropic) run in the server's cwd.
        server = Server(config, port, self.clinvk_home, self.root / "serve.log", self.workdir)
        self.servers.append(server)
        server.start()
        return server
