"""One backend process: spawned in its own session, fed its prompt, read with limits.

A :class:`ProcessRun` owns one child and everything it spawns: the child starts in a
new session (its own process group), so any kill — timeout, idle watchdog, output cap,
cancellation from another thread, server shutdown — reaches the whole group through the
ladder in :mod:`clinvk.core.process.terminate`. Output is read with ``poll()`` on the
calling thread (no reader threads), which is also where the limits are enforced.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from clinvk.core.errors import BackendUnavailable
from clinvk.core.process import procfs, state
from clinvk.core.process.ledger import RunLedger
from clinvk.core.process.procfs import RUN_MARKER_VAR
from clinvk.core.process.terminate import lower_priority, signal_group, terminate
from clinvk.core.types import EndReason

STDERR_TAIL_BYTES = 16 * 1024
# After the child itself exits, how long a grandchild may keep stdout open before it is
# treated as a leftover and killed.
EXIT_DRAIN_SECS = 0.3
POLL_SECS = 0.25
# A prompt shorter than this fits the pipe buffer: writing it cannot block.
PIPE_BUFFER_BYTES = 60_000


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
        return self.reason != EndReason.EXITED


@dataclass
class _ReadState:
    """What the read loop of :meth:`ProcessRun.lines` carries from one select to the next."""

    out_fd: int
    open_fds: set[int]
    last_activity: float
    last_yield: float
    exited_at: float | None = None
    buf: bytearray = field(default_factory=bytearray)


class ProcessRun:
    """One backend process. Iterate :meth:`lines`; call :meth:`cancel` from anywhere."""

    def __init__(
        self,
        argv: list[str],
        *,
        stdin: str = "",
        env: Mapping[str, str] | None = None,
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
        self._ledger: RunLedger | None = None  # where the start was mirrored
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
        # The run's own variable on top of what it inherits (the backend's prepared
        # environment, else this process's).
        env = {**(os.environ if self.env is None else self.env), RUN_MARKER_VAR: self.marker}
        ledger = state.ledger
        since = procfs.boot_ticks() if ledger is not None else None  # before the spawn
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
            state.register(self)
            if ledger is not None:
                self._ledger = ledger
                ledger.add(self.proc.pid, self.marker, since)
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

        if len(data) < PIPE_BUFFER_BYTES:
            write()
        else:
            threading.Thread(target=write, name="clinvk-stdin", daemon=True).start()

    def cancel(self, reason: EndReason = EndReason.CANCELLED) -> None:
        """Stop the run from any thread: the group gets SIGTERM now, SIGKILL after the grace."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            if self._finished.is_set() or self.proc is None:
                return
            signal_group(self.proc.pid, signal.SIGTERM)
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    def abort(self, reason: EndReason = EndReason.CANCELLED) -> None:
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
        # poll(), not a selector object: nothing to create and close per run, no limit on
        # descriptor numbers (select() fails above 1023 in a busy worker).
        poller = select.poll()
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        for fd in (out_fd, err_fd, self._wake_r):
            poller.register(fd, select.POLLIN)
        st = _ReadState(out_fd, {out_fd, err_fd}, self._started, self._started)
        completed = False
        try:
            while out_fd in st.open_fds:
                now = time.monotonic()
                if self._must_stop(st, now):
                    break
                wait = self._select_timeout(st, now, heartbeat)
                ready = poller.poll(math.ceil(wait * 1000))
                if ready:
                    yield from self._read_ready(st, poller, ready)
                elif heartbeat and time.monotonic() - st.last_yield >= heartbeat:
                    st.last_yield = time.monotonic()
                    yield None
                if self._reason:
                    break
            if st.buf and not self._reason:
                yield bytes(st.buf).decode("utf-8", errors="replace")
            completed = True
        finally:
            if not completed:
                # Stopped early by our caller (client gone): that is a cancellation.
                self._set_reason(EndReason.CANCELLED)
            self._finish(err_fd if err_fd in st.open_fds else None)

    def _must_stop(self, st: _ReadState, now: float) -> bool:
        """Whether the read loop ends before the next select: a reason, a limit, or a
        child that exited while a leftover grandchild holds the pipe open."""
        limits = self.limits
        if self._reason:
            return True
        if limits.timeout and now - self._started >= limits.timeout:
            self._set_reason(EndReason.TIMEOUT)
            return True
        if limits.idle_timeout and now - st.last_activity >= limits.idle_timeout:
            self._set_reason(EndReason.IDLE_TIMEOUT)
            return True
        assert self.proc is not None
        if st.exited_at is None and self.proc.poll() is not None:
            st.exited_at = now
        return st.exited_at is not None and now - st.exited_at >= EXIT_DRAIN_SECS

    def _select_timeout(self, st: _ReadState, now: float, heartbeat: float | None) -> float:
        """Seconds until the next deadline the loop must look at (a limit, a heartbeat)."""
        limits = self.limits
        wait = POLL_SECS
        if limits.timeout:
            wait = min(wait, self._started + limits.timeout - now)
        if limits.idle_timeout:
            wait = min(wait, st.last_activity + limits.idle_timeout - now)
        if heartbeat:
            wait = min(wait, st.last_yield + heartbeat - now)
        return max(wait, 0.0)

    def _read_ready(self, st: _ReadState, poller: select.poll,
                    ready: list[tuple[int, int]]) -> Iterator[str]:
        """Read every ready pipe once; yield the complete stdout lines; stop at a limit."""
        for fd, _ in ready:
            if fd == self._wake_r:
                os.read(fd, 64)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                st.open_fds.discard(fd)
                continue
            if fd != st.out_fd:
                self._keep_stderr(chunk)
                continue
            st.last_activity = time.monotonic()
            self._output_bytes += len(chunk)
            if self._output_bytes > self.limits.max_output_bytes:
                self._set_reason(EndReason.OUTPUT_LIMIT)
                return
            st.buf += chunk
            yield from self._split_lines(st)
            if len(st.buf) > self.limits.max_line_bytes:
                self._set_reason(EndReason.LINE_LIMIT)
                return

    def _split_lines(self, st: _ReadState) -> Iterator[str]:
        buf = st.buf
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                return
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            st.last_yield = time.monotonic()
            yield line.decode("utf-8", errors="replace")

    def _set_reason(self, reason: EndReason | str) -> None:
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
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline and poller.poll(50):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._keep_stderr(chunk)

    # -- ending -------------------------------------------------------------------------------

    def _finish(self, stderr_fd: int | None) -> None:
        """Make sure the whole group is gone, reap the child and record the outcome."""
        assert self.proc is not None
        if self._reason:
            terminate(self.proc, self.marker, self.limits.kill_grace)
        else:
            self.proc.wait()
            self._drain_stderr(stderr_fd)
            # Anything still in the group now would be orphaned: remove it; descendants
            # that left the group are looked for off this thread (one /proc scan).
            signal_group(self.proc.pid, signal.SIGKILL)
            state.leftovers.sweep(self.marker)
        if self._reason:
            self._drain_stderr(stderr_fd)
        with self._lock:
            self._finished.set()
        self.outcome = ProcessOutcome(
            exit_code=self.proc.returncode,
            reason=self._reason or EndReason.EXITED,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            stderr_tail=b"".join(self._stderr).decode("utf-8", errors="replace"),
            output_bytes=self._output_bytes,
            pid=self.proc.pid,
        )
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self._close_wake_pipe()
        state.unregister(self)
        if self._ledger is not None:
            self._ledger.remove(self.proc.pid)

    def _close_wake_pipe(self) -> None:
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._wake_r = self._wake_w = -1
