"""Stopping a backend: the TERM -> grace -> KILL ladder, and its scheduling priority.

A backend runs as the leader of its own process group, so one ``killpg`` reaches the
child and everything it forked. The real CLIs start their tool shells with ``setsid``
(own session, own group), which the group misses; those still carry the run's marker
variable and are found under /proc (see :mod:`clinvk.core.process.procfs`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable

from clinvk.core.process import procfs

#: How often the ladder looks whether everything is gone during the grace.
POLL_GRACE_SECS = 0.02


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; a group already gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids``; processes already gone are skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def escaped_descendants(pgid: int, marker: str) -> list[int]:
    """Processes carrying ``marker`` that are no longer in process group ``pgid``."""
    pids = []
    for pid in procfs.marked_pids(marker):
        try:
            if os.getpgid(pid) != pgid:
                pids.append(pid)
        except ProcessLookupError:
            continue
    return pids


def terminate(proc: subprocess.Popen[bytes], marker: str, grace: float) -> None:
    """SIGTERM, up to ``grace`` seconds, then SIGKILL: to the group led by ``proc`` and to
    its descendants that left the group; ``proc`` is reaped before this returns."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    escaped = escaped_descendants(pgid, marker)
    signal_pids(escaped, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if (proc.returncode is not None and not group_alive(pgid)
                and not any(alive(pid) for pid in escaped)):
            break
        time.sleep(POLL_GRACE_SECS)
    signal_group(pgid, signal.SIGKILL)
    signal_pids(set(escaped) | set(escaped_descendants(pgid, marker)), signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not deliver
        pass


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
