"""Process and timing helpers: which fake CLI processes are alive, waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def pids_alive(pidfile: Path) -> list[int]:
    """Pids listed in a fake CLI ``pidfile`` that still exist (zombies count as gone)."""
    if not pidfile.exists():
        return []
    alive = []
    for line in pidfile.read_text().split():
        pid = int(line)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
