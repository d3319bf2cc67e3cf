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
from pathlib import Path

from clinvk.core.process import procfs
from clinvk.core.process.terminate import signal_pids

log = logging.getLogger("clinvk.core.process")

#: Bytes per line of the ledger file: a run's line is written into a slot of its own.
SLOT_BYTES = 64
BLANK_SLOT = b" " * (SLOT_BYTES - 1) + b"\n"


class RunLedger:
    """The backend process groups of this process, mirrored in a small file.

    One line per running group: ``<pgid> <start time of its leader> <run marker>``; the
    start time keeps a process group that is no longer ours from being killed, the marker
    finds descendants that left the group. Writing never fails a run: an unwritable ledger
    is logged once and ignored.

    Each run owns a fixed-width slot (a line padded with blanks to :data:`SLOT_BYTES`):
    its start writes its line into a free slot and its end blanks the slot, each with one
    ``pwrite`` on the caller's thread, before the call returns (no writer thread, no
    rewrite of the file per change; why: docs/performance.md, "Structural changes"). A
    blank line is no entry, so a reader needs nothing but the lines; the file is emptied
    when no run is left. The start time is the caller's lower bound taken before the
    spawn (:func:`procfs.boot_ticks`), so a start never waits on the new child's /proc.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd = -1
        self._slots: dict[int, tuple[int, bytes]] = {}  # pid -> (slot, its line)
        self._free: list[int] = []  # slots below _used that no run holds
        self._used = 0  # slots the file holds
        self._warned = False

    def add(self, pid: int, marker: str = "-", since: int | None = None) -> None:
        """Mirror the group ``pid`` leads; ``since``: clock ticks since boot no later than
        its leader's start (read from /proc when not given)."""
        if since is None:
            since = procfs.start_time(pid)
            if since is None:  # gone already: nothing left to kill
                return
        line = f"{pid} {since} {marker}".encode().ljust(SLOT_BYTES - 1) + b"\n"
        with self._lock:
            if pid in self._slots:
                slot = self._slots[pid][0]
            elif self._free:
                slot = self._free.pop()
            else:
                slot, self._used = self._used, self._used + 1
            self._slots[pid] = (slot, line)
            self._write(slot, line)

    def remove(self, pid: int) -> None:
        with self._lock:
            entry = self._slots.pop(pid, None)
            if entry is None:
                return
            if not self._slots:  # nothing runs: an empty file
                self._free, self._used = [], 0
                self._truncate()
                return
            self._free.append(entry[0])
            self._write(entry[0], BLANK_SLOT)

    def flush(self, timeout: float = 5.0) -> bool:
        """The file holds every change once add() or remove() returned: nothing to wait
        for (kept for callers that wait)."""
        return True

    def _open(self) -> int:
        """Under the lock: the file's descriptor, opened (and emptied) on first use; an
        open after a failed one writes the lines the file missed meanwhile."""
        if self._fd < 0:
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags, 0o600)
            except FileNotFoundError:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, flags, 0o600)
            for slot, line in self._slots.values():
                os.pwrite(fd, line, slot * SLOT_BYTES)
            self._fd = fd
        return self._fd

    def _write(self, slot: int, data: bytes) -> None:
        try:
            os.pwrite(self._open(), data, slot * SLOT_BYTES)
        except OSError as exc:
            self._failed(exc)

    def _truncate(self) -> None:
        try:
            os.ftruncate(self._open(), 0)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cannot write the run ledger %s (%s): backends of this process "
                        "are not cleaned up if it is killed", self.path, exc)


def kill_orphaned_groups(path: Path) -> int:
    """Read a dead process's ledger, SIGKILL every group of it still alive, remove it.

    A group is the run's when it has a live member started no earlier than the run and,
    for a line with a run marker, a member that carries the marker.

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
        marker = parts[2] if len(parts) == 3 and len(parts[2]) == 32 else None
        marked = procfs.marked_pids(marker) if marker else []
        members = procfs.group_members(pgid, since) if pgid > 1 else []
        # A group none of whose members carries the run's marker is not that run's: its
        # leader's pid was reused meanwhile, perhaps by a CLI of a sibling worker.
        if members and (marker is None or not set(members).isdisjoint(marked)):
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        # Tools the run started with setsid are in no group of ours.
        signal_pids(marked, signal.SIGKILL)
    for stale in (path, path.with_name(path.name + ".tmp")):
        try:
            stale.unlink()
        except OSError:
            pass
    return killed
