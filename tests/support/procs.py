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


def fakes_alive(home: str | Path, *, zombies: bool = False) -> list[int]:
    """Pids of live fake CLI processes started with ``HOME=home`` (zombies count as gone
    unless ``zombies``).

    Every test gives its gateway a private ``HOME`` and the backends inherit it, so this
    finds the fakes one test started, orphans included, and none of a test running beside
    it (pytest-xdist) or of another checkout's run."""
    from support.fakes import FAKE_BIN

    needle, wanted = str(FAKE_BIN).encode(), f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if (zombies or state != "Z") and wanted in environ:
            found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
