"""Who runs a job, and whether that runner is gone: what every job store shares.

A runner is a gateway process that claimed a job; its claim names it by pid and kernel
start time on its own node, and expires unless renewed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_CLAIM_SECS", "process_start_time", "runner_gone"]

#: How long a job runner's claim lasts unless renewed (``server.jobs_claim_timeout_secs``).
DEFAULT_CLAIM_SECS = 30.0


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a live ``pid`` (field 22 of /proc/PID/stat): with the pid
    it names one process for good, so a reused pid is never mistaken for the runner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie runs nothing


def runner_gone(pid: int | None, start: str | None, expires: float | None, now: float,
                local: bool = True) -> bool:
    """Whether the process holding a job is gone. On this node its pid says so for sure
    (dead, or reused by another process); a process on another node cannot be looked at,
    so there its claim counts, which it renews while it lives: gone once expired."""
    if pid is None:
        return True
    if local:
        return process_start_time(pid) != start
    return expires is None or expires < now
