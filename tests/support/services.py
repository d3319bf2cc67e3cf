"""Real service processes for tests: redis-server and PostgreSQL, each on a free loopback
port in a temporary directory, stopped at the end.

A missing server is installed with apt (CI runs as root on a fresh Debian machine). When it
cannot be had, the run fails under ``CI=true`` (CI must exercise these paths) and skips with
the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def install_turn() -> Iterator[None]:
    """Hold the machine's one installer turn: the test processes (the two pytest-xdist
    workers, another checkout's run) install one at a time, and each checks again inside
    its turn, so the second finds what the first installed instead of racing apt/dpkg."""
    path = Path(tempfile.gettempdir()) / "clinvk-tests-install.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apt_install(package: str, present: Callable[[], object] | None = None) -> str | None:
    """Install a Debian package in the installer turn, unless ``present()`` (asked inside
    the turn) says another process installed it meanwhile; returns why it failed, or None."""
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing needs root"
    with install_turn():
        if present is not None and present():
            return None
        return _apt_get(package)


def _apt_get(package: str) -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    for cmd in (["apt-get", *lock, "update"], ["apt-get", *lock, "install", "-y", package]):
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)}: {exc}"
        if proc.returncode != 0:
            return f"{' '.join(cmd)} exited {proc.returncode}: " + \
                proc.stderr.decode(errors="replace")[-500:]
    return None


def require(find: Callable[[], str | None], package: str) -> str:
    """The path ``find()`` returns, installing ``package`` first when it finds nothing."""
    found = find()
    if found:
        return found
    reason = apt_install(package, present=find)
    found = find()
    if found:
        return found
    why = reason or "not found after the install"
    message = f"{package} is missing and could not be installed: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
                timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} did not become ready:\n" + log.read_text(errors="replace"))


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A private redis-server; yields its URL.

    :func:`free_port` only finds a port that was free a moment ago: another test process
    (a second pytest-xdist worker) may take it first. So the server counts as ready only
    when the redis answering on the port is this process's, and a start that lost its port
    is retried on another.
    """
    binary = require(lambda: shutil.which("redis-server"), "redis-server")
    import redis

    for attempt in range(3):
        port = free_port()
        log = directory / "redis.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(directory), "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

        def ready(client: redis.Redis = client, pid: int = proc.pid) -> bool:
            try:
                return int(client.info("server")["process_id"]) == pid
            except redis.RedisError:
                return False

        try:
            _wait_ready(ready, proc, log)
        except RuntimeError:
            _stop(proc)
            if attempt == 2:
                raise
            continue
        finally:
            client.close()
        try:
            yield f"redis://127.0.0.1:{port}"
        finally:
            _stop(proc)
        return


def _postgres_bin() -> Path | None:
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / "postgres").exists() and (directory / "initdb").exists():
            return directory
    return None


def install_missing(wanted: set[str]) -> None:
    """Install the servers in ``wanted`` ("redis", "postgresql") that are missing, before
    any test runs: an install takes longer than one test may (pytest-timeout), so doing
    it inside the first test's fixture would fail that test on a fresh machine. Failures
    are left to :func:`require`, which reports them when a test asks for the server."""
    if "redis" in wanted and not shutil.which("redis-server"):
        apt_install("redis-server", present=lambda: shutil.which("redis-server"))
    if "postgresql" in wanted and _postgres_bin() is None:
        apt_install("postgresql", present=_postgres_bin)


class PostgresCluster:
    """A private PostgreSQL cluster (trust auth, loopback only) that a test may stop and
    start again on the same port and data (a store outage)."""

    def __init__(self, directory: Path) -> None:
        self.bindir = Path(require(lambda: str(_postgres_bin() or "") or None, "postgresql"))
        # The cluster gets its own directory right under the system temp dir: pytest's temp
        # directories are private to root, and the postgres user must reach its data.
        self.home = Path(tempfile.mkdtemp(prefix="clinvk-pg-"))
        self.data = self.home / "data"
        self.log = directory / "postgres.log"
        self.use_port(free_port())
        self.proc: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root, so as root the cluster belongs to the
        # ``postgres`` system user that the Debian package creates.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data),
                        "-U", "clinvk", "--auth=trust", "--encoding=UTF8", "--no-sync"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.as_user, str(self.bindir / "postgres"), "-D", str(self.data),
                 "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.home),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        _wait_ready(self._ready, self.proc, self.log)

    def _ready(self) -> bool:
        """This cluster's postmaster says it accepts connections on its port (its
        ``postmaster.pid``): another test process's server on the same port is not ours."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[3].strip() == str(self.port) \
            and lines[7].strip() == "ready"

    def use_port(self, port: int) -> None:
        self.port = port
        self.url = f"postgresql://clinvk@127.0.0.1:{port}/clinvk"

    def stop(self) -> None:
        """Fast shutdown, sent to the whole group: runuser does not pass SIGINT on, and a
        postmaster left running would outlive the tests."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        _stop(proc, signal.SIGINT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there

    def createdb(self, name: str) -> None:
        subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "clinvk", name], check=True, capture_output=True)


@contextlib.contextmanager
def postgres_cluster(directory: Path) -> Iterator[PostgresCluster]:
    """A started :class:`PostgresCluster` with database ``clinvk``, removed at the end."""
    cluster = PostgresCluster(directory)
    try:
        for attempt in range(3):  # the port found free may be taken first (redis_server)
            try:
                cluster.start()
                break
            except RuntimeError:
                cluster.stop()
                if attempt == 2:
                    raise
                cluster.use_port(free_port())
        cluster.createdb("clinvk")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(directory: Path) -> Iterator[str]:
    """A private PostgreSQL cluster; yields its URL."""
    with postgres_cluster(directory) as cluster:
        yield cluster.url
