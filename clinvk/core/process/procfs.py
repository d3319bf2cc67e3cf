"""Every read of Linux ``/proc`` the runner does: marked processes, start times, groups.

All functions return empty or ``None`` where ``/proc`` cannot be read (not Linux, a
process that went away meanwhile): the callers treat "unknown" as "nothing to do".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# Set in every backend's environment with a per-run value, so that descendants that leave
# the process group (`setsid`) can still be found and stopped.
RUN_MARKER_VAR = "CLINVK_RUN_ID"

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``CLINVK_RUN_ID=<marker>``."""
    return pids_marked_with({marker})


def pids_marked_with(markers: set[str]) -> list[int]:
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
        environ = _read_environ(name)
        if environ and _marker_value(environ, prefix) in wanted:
            found.append(int(name))
    return found


def _read_environ(pid: str) -> bytes | None:
    """A process's environment block; plain os calls, as a scan makes one read per process."""
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _marker_value(environ: bytes, prefix: bytes) -> bytes | None:
    """The value of the variable ``prefix`` names in a NUL-separated environment block."""
    if environ.startswith(prefix):
        at = len(prefix)
    else:
        at = environ.find(b"\0" + prefix)
        if at < 0:
            return None
        at += 1 + len(prefix)
    end = environ.find(b"\0", at)
    return environ[at:end if end >= 0 else None]


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (field 3 onwards)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def boot_ticks() -> int | None:
    """Now, in the unit of a process's start time (clock ticks since boot, as the kernel
    truncates it): taken before a spawn, a lower bound of the child's start time that
    costs no read of the child's /proc (which waits for its exec). None where the clock
    is missing (not Linux)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:
        return None
    return time.clock_gettime_ns(clock) // (1_000_000_000 // _CLOCK_TICKS)


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def group_members(pgid: int, since: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` started no earlier than
    ``since`` (clock ticks since boot)."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is not None and len(fields) > 19 and fields[0] != "Z" \
                and int(fields[2]) == pgid and int(fields[19]) >= since:
            members.append(int(name))
    return members
