"""Subprocess lifecycle for backend CLIs (SPEC §4).

A :class:`ProcessRun` owns one child and everything it spawns: the child starts in a
new session (its own process group), so any kill — timeout, idle watchdog, output cap,
cancellation from another thread, server shutdown — reaches the whole group with
SIGTERM and then SIGKILL after a short grace. Output is read with a selector on the
calling thread (no reader threads), which is also where the limits are enforced.
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clinvk.core.errors import BackendUnavailable

log = logging.getLogger("clinvk.core.runner")

EXITED = "exited"
TIMEOUT = "timeout"
IDLE_TIMEOUT = "idle_timeout"
CANCELLED = "cancelled"
OUTPUT_LIMIT = "output_limit"
LINE_LIMIT = "line_limit"

STDERR_TAIL_BYTES = 16 * 1024
# Set in every backend's environment with a per-run value, so that descendants that leave
# the process group (`setsid`) can still be found and stopped.
RUN_MARKER_VAR = "CLINVK_RUN_ID"
# After the child itself exits, how long a grandchild may keep stdout open before it is
# treated as a leftover and killed.
EXIT_DRAIN_SECS = 0.3
POLL_SECS = 0.25

_active: weakref.WeakSet[ProcessRun] = weakref.WeakSet()
_active_lock = threading.Lock()


@dataclass(frozen=True)
class Limits:
    timeout: float | None = None
    idle_timeout: float | None = None
    max_output_bytes: int = 16 * 1024 * 1024
    max_line_bytes: int = 8 * 1024 * 1024
    # SIGTERM -> SIGKILL. Short: the CLIs exit at once on SIGTERM, and a client that went
    # away must not keep a SIGTERM-ignoring child alive for long.
    kill_grace: float = 0.5
    # Niceness added to the backend's process group (server.backend_nice); 0 = none.
    nice: int = 0


@dataclass
class ProcessOutcome:
    exit_code: int | None
    reason: str
    duration_ms: int
    stderr_tail: str
    output_bytes: int
    pid: int

    @property
    def killed(self) -> bool:
        return self.reason != EXITED


class ProcessRun:
    """One backend process. Iterate :meth:`lines`; call :meth:`cancel` from anywhere."""

    def __init__(
        self,
        argv: list[str],
        *,
        stdin: str = "",
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.argv = argv
        self.stdin_text = stdin
        self.env = env
        self.cwd = cwd
        self.limits = limits or Limits()
        self.proc: subprocess.Popen[bytes] | None = None
        self.outcome: ProcessOutcome | None = None
        self._reason: str | None = None
        self._stderr: deque[bytes] = deque()
        self._stderr_len = 0
        self._started = 0.0
        self._output_bytes = 0
        self._wake_r, self._wake_w = -1, -1
        self._reading = False
        self._lock = threading.Lock()
        self._finished = threading.Event()
        # Inherited by every descendant, also those that leave the process group.
        self.marker = uuid.uuid4().hex

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the child and hand it its prompt.

        The prompt is encoded before the spawn, and any failure after it kills the child's
        group before the error propagates: a failed start never leaves a process behind.
        """
        data = self.stdin_text.encode("utf-8")
        self._wake_r, self._wake_w = os.pipe()
        env = dict(os.environ if self.env is None else self.env)
        env[RUN_MARKER_VAR] = self.marker
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            self._close_wake_pipe()
            raise BackendUnavailable(f"cannot start {self.argv[0]!r}: {exc.strerror}") from exc
        except BaseException:
            self._close_wake_pipe()
            raise
        try:
            self._started = time.monotonic()
            if self.limits.nice > 0:
                lower_priority(self.proc.pid, self.limits.nice)
            with _active_lock:
                _active.add(self)
            if _ledger is not None:
                _ledger.add(self.proc.pid, self.marker)
            self._feed_stdin(data)
        except BaseException:
            self.abort()
            raise

    def _feed_stdin(self, data: bytes) -> None:
        assert self.proc and self.proc.stdin
        pipe = self.proc.stdin

        def write() -> None:
            try:
                pipe.write(data)
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    pipe.close()
                except OSError:
                    pass

        if len(data) < 60_000:  # fits the pipe buffer: cannot block
            write()
        else:
            threading.Thread(target=write, name="clinvk-stdin", daemon=True).start()

    def cancel(self, reason: str = CANCELLED) -> None:
        """Stop the run from any thread: the group gets SIGTERM now, SIGKILL after the grace."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            if self._finished.is_set() or self.proc is None:
                return
            self._signal_group(signal.SIGTERM)
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    def abort(self, reason: str = CANCELLED) -> None:
        """Stop a started run whose :meth:`lines` may never be read: the group is
        terminated and the child reaped here. If another thread is reading, this is
        :meth:`cancel` and that reader finishes the job."""
        with self._lock:
            reading, self._reading = self._reading, True
        if reading or self.proc is None:
            self.cancel(reason)
            return
        self._set_reason(reason)
        self._finish(None)

    # -- reading ------------------------------------------------------------------------------

    def lines(self, heartbeat: float | None = None) -> Iterator[str | None]:
        """Yield stdout lines (without the newline) as they arrive.

        With ``heartbeat``, ``None`` is yielded whenever that many seconds pass without a
        line, so a caller can keep its own client connection alive. When the generator
        ends, :attr:`outcome` is set; if the caller stops early, the group is killed.
        """
        if self.proc is None:
            self.start()
        with self._lock:
            if self._reading:
                raise RuntimeError("the output of a run is read once")
            self._reading = True
        assert self.proc and self.proc.stdout and self.proc.stderr
        limits = self.limits
        sel = selectors.DefaultSelector()
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        sel.register(out_fd, selectors.EVENT_READ, "out")
        sel.register(err_fd, selectors.EVENT_READ, "err")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        buf = bytearray()
        last_activity = last_yield = self._started
        exited_at: float | None = None
        open_fds = {out_fd, err_fd}
        completed = False
        try:
            while out_fd in open_fds:
                now = time.monotonic()
                if self._reason:
                    break
                if limits.timeout and now - self._started >= limits.timeout:
                    self._set_reason(TIMEOUT)
                    break
                if limits.idle_timeout and now - last_activity >= limits.idle_timeout:
                    self._set_reason(IDLE_TIMEOUT)
                    break
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at >= EXIT_DRAIN_SECS:
                    break  # child gone; a leftover grandchild holds the pipe open
                wait = POLL_SECS
                if limits.timeout:
                    wait = min(wait, self._started + limits.timeout - now)
                if limits.idle_timeout:
                    wait = min(wait, last_activity + limits.idle_timeout - now)
                if heartbeat:
                    wait = min(wait, last_yield + heartbeat - now)
                ready = sel.select(max(wait, 0.0))
                if not ready:
                    if heartbeat and time.monotonic() - last_yield >= heartbeat:
                        last_yield = time.monotonic()
                        yield None
                    continue
                for key, _ in ready:
                    if key.data == "wake":
                        os.read(self._wake_r, 64)
                        continue
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fd)
                        open_fds.discard(key.fd)
                        continue
                    if key.data == "err":
                        self._keep_stderr(chunk)
                        continue
                    last_activity = time.monotonic()
                    self._output_bytes += len(chunk)
                    if self._output_bytes > limits.max_output_bytes:
                        self._set_reason(OUTPUT_LIMIT)
                        break
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl < 0:
                            break
                        line = bytes(buf[:nl])
                        del buf[: nl + 1]
                        last_yield = time.monotonic()
                        yield line.decode("utf-8", errors="replace")
                    if len(buf) > limits.max_line_bytes:
                        self._set_reason(LINE_LIMIT)
                        break
                if self._reason:
                    break
            if buf and not self._reason:
                yield bytes(buf).decode("utf-8", errors="replace")
            completed = True
        finally:
            sel.close()
            if not completed:
                # Stopped early by our caller (client gone): that is a cancellation.
                self._set_reason(CANCELLED)
            self._finish(err_fd if err_fd in open_fds else None)

    def _set_reason(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def _keep_stderr(self, chunk: bytes) -> None:
        self._stderr.append(chunk)
        self._stderr_len += len(chunk)
        while self._stderr_len > STDERR_TAIL_BYTES and len(self._stderr) > 1:
            self._stderr_len -= len(self._stderr.popleft())

    def _drain_stderr(self, fd: int | None) -> None:
        if fd is None:
            return
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline and sel.select(0.05):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._keep_stderr(chunk)
        finally:
            sel.close()

    # -- ending -------------------------------------------------------------------------------

    def _finish(self, stderr_fd: int | None) -> None:
        """Make sure the whole group is gone, reap the child and record the outcome."""
        assert self.proc is not None
        if self._reason:
            self._terminate_group()
        else:
            self.proc.wait()
            self._drain_stderr(stderr_fd)
            # Anything still in the group now would be orphaned: remove it; descendants
            # that left the group are looked for off this thread (one /proc scan).
            self._signal_group(signal.SIGKILL)
            _leftovers.sweep(self.marker)
        if self._reason:
            self._drain_stderr(stderr_fd)
        with self._lock:
            self._finished.set()
        self.outcome = ProcessOutcome(
            exit_code=self.proc.returncode,
            reason=self._reason or EXITED,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            stderr_tail=b"".join(self._stderr).decode("utf-8", errors="replace"),
            output_bytes=self._output_bytes,
            pid=self.proc.pid,
        )
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self._close_wake_pipe()
        with _active_lock:
            _active.discard(self)
        if _ledger is not None:
            _ledger.remove(self.proc.pid)

    def _terminate_group(self) -> None:
        """SIGTERM, a grace, then SIGKILL: to the group and to descendants that left it.

        The real CLIs start their tool shells with ``setsid`` (own session, own group),
        so the group alone misses them; they still carry this run's marker variable.
        """
        assert self.proc is not None
        self._signal_group(signal.SIGTERM)
        escaped = self._escaped_descendants()
        _signal_pids(escaped, signal.SIGTERM)
        deadline = time.monotonic() + self.limits.kill_grace
        while time.monotonic() < deadline:
            self.proc.poll()
            if (self.proc.returncode is not None and not self._group_alive()
                    and not any(_alive(pid) for pid in escaped)):
                break
            time.sleep(0.02)
        self._signal_group(signal.SIGKILL)
        _signal_pids(set(escaped) | set(self._escaped_descendants()), signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not deliver
            pass

    def _escaped_descendants(self) -> list[int]:
        assert self.proc is not None
        pids = []
        for pid in marked_pids(self.marker):
            try:
                if os.getpgid(pid) != self.proc.pid:
                    pids.append(pid)
            except ProcessLookupError:
                continue
        return pids

    def _group_alive(self) -> bool:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _close_wake_pipe(self) -> None:
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._wake_r = self._wake_w = -1


def lower_priority(pgid: int, nice: int) -> None:
    """Let a backend's process group yield the CPU to this process (best effort).

    ``nice`` is added to this process's own niceness (capped at 19) for every process of
    the group. Where the kernel schedules each session as one group (Linux autogroup,
    ``/proc/sys/kernel/sched_autogroup_enabled``), a niceness per process counts only
    inside the group, and every backend starts a session of its own; so the niceness of
    that session's group is set too. Failures (no permission, not Linux) are ignored.
    """
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    try:
        os.setpriority(os.PRIO_PGRP, pgid, target)
    except OSError:
        pass
    try:
        with open(f"/proc/{pgid}/autogroup", "w") as autogroup:
            autogroup.write(str(target))
    except OSError:
        pass


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``CLINVK_RUN_ID=<marker>`` (Linux /proc)."""
    return _pids_marked_with({marker})


def _pids_marked_with(markers: set[str]) -> list[int]:
    """Processes (not this one) whose ``CLINVK_RUN_ID`` is one of ``markers``."""
    prefix = f"{RUN_MARKER_VAR}=".encode()
    wanted = {marker.encode() for marker in markers}
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    own = os.getpid()
    for name in names:
        if not name.isdigit() or int(name) == own:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if environ.startswith(prefix):
            at = len(prefix)
        else:
            at = environ.find(b"\0" + prefix)
            if at < 0:
                continue
            at += 1 + len(prefix)
        end = environ.find(b"\0", at)
        if environ[at:end if end >= 0 else None] in wanted:
            found.append(int(name))
    return found


#: How long after a run's normal end the processes it left behind are looked for.
SWEEP_DELAY_SECS = 0.1


class LeftoverSweeper:
    """Kills what a run that ended normally left behind outside its process group.

    After a normal exit the group is killed at once, but a tool process that an agent
    started with ``setsid`` (its own session) is not in it. Such processes still carry the
    run's marker variable; finding them means reading every process's environment under
    /proc (0.6 ms with 65 processes, more on a busy host), so it happens on one background
    thread :data:`SWEEP_DELAY_SECS` after the run's end, when the request thread that ended
    it has answered (a scan at once competed with it for the GIL), with the markers of
    runs that ended meanwhile handled in one scan. A scan is repeated (at most
    :attr:`passes` times) until it finds nothing, for a daemon that was still forking.
    Processes of runs still going carry other markers and are left alone.
    """

    passes = 3

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._busy = False  # a scan of markers taken from _pending is in progress
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()  # set once someone waits: no more pauses

    def sweep(self, marker: str) -> None:
        with self._cond:
            self._pending.add(marker)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="clinvk-sweeper",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Until every requested sweep is done (tests, process exit); False on timeout."""
        self._hurry.set()
        with self._cond:
            return self._cond.wait_for(lambda: not (self._pending or self._busy), timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            self._hurry.wait(SWEEP_DELAY_SECS)
            with self._cond:
                markers, self._pending = self._pending, set()
                self._busy = True
            try:
                for _ in range(self.passes):
                    killed = _pids_marked_with(markers)
                    if not killed:
                        break
                    _signal_pids(killed, signal.SIGKILL)
                    log.warning("killed %d process(es) left running outside their process "
                                "group after a backend exited: %s", len(killed),
                                ", ".join(f"pid {pid}" for pid in sorted(killed)))
            except Exception:  # pragma: no cover - never let the sweeper thread die
                log.exception("sweeping leftovers of finished backends failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


_leftovers = LeftoverSweeper()
# A CLI process exits right after its run: give the sweep of that run a moment first.
atexit.register(lambda: _leftovers.wait(1.0))


def wait_for_leftover_sweeps(timeout: float = 2.0) -> bool:
    """Block until processes left behind by finished runs have been looked for."""
    return _leftovers.wait(timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_pids(pids: list[int] | set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def active_runs() -> list[ProcessRun]:
    with _active_lock:
        return list(_active)


def terminate_all(reason: str = CANCELLED) -> int:
    """Cancel every running backend process of this server process (used at shutdown)."""
    runs = active_runs()
    for run in runs:
        run.cancel(reason)
    return len(runs)


# --------------------------------------------------------------------------- run ledger
#
# A process killed with SIGKILL (an OOM-killed or ``kill -9``-ed gunicorn worker) cannot
# stop its backends: they run on, orphaned, with nobody to answer to. A ledger file lists
# the process groups a process has running, so that its parent (the gunicorn master, in
# ``child_exit``) can kill what a dead worker left behind.

_ledger: RunLedger | None = None


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) if len(fields) > 19 else None


def _group_members(pgid: int, since: int) -> list[int]:
    """Live processes of process group ``pgid`` started no earlier than ``since``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 19 and fields[0] != "Z" and int(fields[2]) == pgid \
                and int(fields[19]) >= since:
            members.append(int(entry.name))
    return members


#: How long the ledger's writer waits after a change before writing (see _write_loop).
LEDGER_WRITE_DELAY_SECS = 0.02


class RunLedger:
    """The backend process groups of this process, mirrored in a small file.

    One line per running group: ``<pgid> <start time of its leader> <run marker>``; the
    start time keeps a reused pid from being mistaken for one of ours, the marker finds
    descendants that left the group. Writing never fails a run:
    an unwritable ledger is logged once and ignored.

    The file is written by one background thread: a run's start and end only update the
    table and wake it, so request threads never wait for file I/O or for each other. (When
    every start and end rewrote the file under the lock, 64 concurrent runs queued on it
    for seconds; see docs/performance.md, "Speed-ups".) Changes that arrive while a write
    is in progress are coalesced into the next one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # pid -> (start time of the leader, or None until the writer has read it; marker)
        self._groups: dict[int, tuple[int | None, str]] = {}
        self._changed = threading.Condition(threading.Lock())
        self._version = 0  # bumped on every change
        self._written = 0  # the version the file holds
        self._writer: threading.Thread | None = None
        self._ended = False  # a run ended since the last write: write without the pause
        self._warned = False

    def add(self, pid: int, marker: str = "-") -> None:
        # The leader's start time is read by the writer, not here: right after Popen the
        # child is still exec'ing (env, then the interpreter), and reading its
        # /proc/PID/stat then waited for that, about 1.2 ms on the request's critical path.
        with self._changed:
            self._groups[pid] = (None, marker)
            self._touch()

    def remove(self, pid: int) -> None:
        with self._changed:
            if self._groups.pop(pid, None) is not None:
                self._ended = True
                self._touch()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the file holds every change made so far; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._written >= self._version, timeout)

    def _touch(self) -> None:
        """Under the condition's lock: record a change and make sure the writer runs."""
        self._version += 1
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name="clinvk-run-ledger",
                                            daemon=True)
            self._writer.start()
        self._changed.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while self._written == self._version:
                    self._changed.wait()
                ended, self._ended = self._ended, False
            # After a start, not at once: a write right away competed for the GIL with the
            # request thread that had just started its run (spawning took 2.1-2.8 ms
            # instead of 0.8 ms at concurrency 1); after the pause it waits on its CLI, and
            # bursts of starts coalesce. A worker killed within the pause leaves that run
            # out of the file. After an end the file is brought up to date at once, so it
            # never lags behind a finished request (what is on disk then is settled).
            if not ended:
                time.sleep(LEDGER_WRITE_DELAY_SECS)
            with self._changed:
                unknown = [pid for pid, (started, _) in self._groups.items() if started is None]
            start_times = {pid: _start_time(pid) for pid in unknown}  # /proc, off the lock
            with self._changed:
                for pid, started in start_times.items():
                    entry = self._groups.get(pid)
                    if entry is not None and entry[0] is None and started is not None:
                        self._groups[pid] = (started, entry[1])
                version = self._version
                # a leader already gone (start time unreadable) has nothing left to kill
                text = "".join(f"{pid} {started} {marker}\n"
                               for pid, (started, marker) in self._groups.items()
                               if started is not None)
            self._write(text)
            with self._changed:
                self._written = version
                self._changed.notify_all()

    def _write(self, text: str) -> None:
        # Plain os calls: the writer often runs while a request thread renders its
        # response, and every Python step here holds the GIL that thread needs.
        target = str(self.path)
        tmp = target + ".tmp"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except FileNotFoundError:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                data = memoryview(text.encode())
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write the run ledger %s (%s): backends of this process "
                            "are not cleaned up if it is killed", self.path, exc)


def use_ledger(ledger: RunLedger | None) -> None:
    """Mirror this process's running backends in ``ledger`` (None: stop doing so)."""
    global _ledger
    _ledger = ledger


def kill_orphaned_groups(path: Path) -> int:
    """Read a dead process's ledger, SIGKILL every group of it still alive, remove it.

    Returns how many groups were killed.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError:
        return 0
    killed = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
            continue
        pgid, since = int(parts[0]), int(parts[1])
        if pgid > 1 and _group_members(pgid, since):
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        if len(parts) == 3 and len(parts[2]) == 32:
            # Tools the run started with setsid are in no group of ours.
            _signal_pids(marked_pids(parts[2]), signal.SIGKILL)
    for stale in (path, path.with_name(path.name + ".tmp")):
        try:
            stale.unlink()
        except OSError:
            pass
    return killed
