"""The crash ledger: the backend process groups of a process, mirrored in a small file.

A process killed with SIGKILL (an OOM-killed or ``kill -9``-ed gunicorn worker) cannot
stop its backends: they run on, orphaned, with nobody to answer to. A ledger file lists
the process groups a process has running, so that its parent (the gunicorn master, in
``child_exit``) can kill what a dead worker left behind with :func:`kill_orphaned_groups`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from clinvk.core.process import procfs
from clinvk.core.process.terminate import signal_pids

log = logging.getLogger("clinvk.core.process")

#: How long the ledger's writer waits after a start before writing (see _write_loop).
LEDGER_WRITE_DELAY_SECS = 0.02


class RunLedger:
    """The backend process groups of this process, mirrored in a small file.

    One line per running group: ``<pgid> <start time of its leader> <run marker>``; the
    start time keeps a reused pid from being mistaken for one of ours, the marker finds
    descendants that left the group. Writing never fails a run:
    an unwritable ledger is logged once and ignored.

    The file is written by one background thread: a run's start and end only update the
    table and wake it, so request threads never wait for file I/O or for each other (why:
    docs/performance.md, "Speed-ups"). Changes that arrive while a write is in progress
    are coalesced into the next one.
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
        # child is still exec'ing, and reading its /proc/PID/stat would wait for that on
        # the request's critical path.
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
            # After a start, not at once: a write right away competes for the GIL with the
            # request thread that has just started its run; after the pause that thread
            # waits on its CLI, and bursts of starts coalesce. A worker killed within the
            # pause leaves that run out of the file. After an end the file is brought up
            # to date at once, so it never lags behind a finished request.
            if not ended:
                time.sleep(LEDGER_WRITE_DELAY_SECS)
            version, text = self._render()
            self._write(text)
            with self._changed:
                self._written = version
                self._changed.notify_all()

    def _render(self) -> tuple[int, str]:
        """Fill in the leaders' start times (read off the lock) and render the file."""
        with self._changed:
            unknown = [pid for pid, (started, _) in self._groups.items() if started is None]
        start_times = {pid: procfs.start_time(pid) for pid in unknown}
        with self._changed:
            for pid, started in start_times.items():
                entry = self._groups.get(pid)
                if entry is not None and entry[0] is None and started is not None:
                    self._groups[pid] = (started, entry[1])
            # a leader already gone (start time unreadable) has nothing left to kill
            text = "".join(f"{pid} {started} {marker}\n"
                           for pid, (started, marker) in self._groups.items()
                           if started is not None)
            return self._version, text

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
        if pgid > 1 and procfs.group_members(pgid, since):
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        if len(parts) == 3 and len(parts[2]) == 32:
            # Tools the run started with setsid are in no group of ours.
            signal_pids(procfs.marked_pids(parts[2]), signal.SIGKILL)
    for stale in (path, path.with_name(path.name + ".tmp")):
        try:
            stale.unlink()
        except OSError:
            pass
    return killed
