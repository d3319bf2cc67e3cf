"""Kills what a run that ended normally left behind outside its process group."""

from __future__ import annotations

import logging
import signal
import threading
import time

from clinvk.core.process import procfs
from clinvk.core.process.terminate import signal_pids

log = logging.getLogger("clinvk.core.process")

#: How long after a run's normal end the processes it left behind are looked for.
SWEEP_DELAY_SECS = 0.1
#: The least time from one scan's start to the next: under load, runs end faster than
#: this and one scan handles every run that ended meanwhile (a scan reads every process's
#: environment; its cost per request: docs/performance.md, "Structural changes").
SWEEP_INTERVAL_SECS = 0.5


class LeftoverSweeper:
    """Kills what a run that ended normally left behind outside its process group.

    After a normal exit the group is killed at once, but a tool process that an agent
    started with ``setsid`` (its own session) is not in it. Such processes still carry the
    run's marker variable; finding them means reading every process's environment under
    /proc, so it happens on one background thread :data:`SWEEP_DELAY_SECS` after the run's
    end, once the request thread that ended it has answered, and no sooner than
    :data:`SWEEP_INTERVAL_SECS` after the previous scan began, with the markers of runs that
    ended meanwhile handled in one scan (the cost: docs/performance.md). A scan is repeated
    (at most :attr:`passes` times) until it finds nothing, for a daemon that was still
    forking. Processes of runs still going carry other markers and are left alone.
    """

    passes = 3

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._busy = False  # a scan of markers taken from _pending is in progress
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()  # set once someone waits: no more pauses
        self._last_scan = float("-inf")  # monotonic start of the previous scan

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
            pause = max(SWEEP_DELAY_SECS, self._last_scan + SWEEP_INTERVAL_SECS - time.monotonic())
            self._hurry.wait(pause)
            self._last_scan = time.monotonic()
            with self._cond:
                markers, self._pending = self._pending, set()
                self._busy = True
            try:
                self._kill_marked(markers)
            except Exception:  # pragma: no cover - never let the sweeper thread die
                log.exception("sweeping leftovers of finished backends failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _kill_marked(self, markers: set[str]) -> None:
        for _ in range(self.passes):
            killed = procfs.pids_marked_with(markers)
            if not killed:
                break
            signal_pids(killed, signal.SIGKILL)
            log.warning("killed %d process(es) left running outside their process "
                        "group after a backend exited: %s", len(killed),
                        ", ".join(f"pid {pid}" for pid in sorted(killed)))
