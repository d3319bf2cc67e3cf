"""The cap on concurrent backend runs, and the observation points around a run."""

from __future__ import annotations

import threading
import time

from clinvk.core.errors import Saturated


class EngineHooks:
    """Observation points for metrics; the server overrides them, the CLI does not care."""

    def run_started(self, backend: str) -> None: ...

    def run_finished(self, backend: str, status: str, seconds: float) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def session_created(self, backend: str) -> None: ...


class RunSlots:
    """A cap on concurrent backend runs with a bounded wait for a free slot."""

    def __init__(self, limit: int, queue_timeout: float) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self._sem = threading.BoundedSemaphore(limit) if limit > 0 else None
        self._in_use = 0
        self._count_lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        return self._in_use

    def acquire(self) -> float:
        """Take a slot, waiting at most the queue timeout; return the seconds waited."""
        started = time.monotonic()
        if self._sem is not None and not self._sem.acquire(timeout=max(self.queue_timeout, 0.0)):
            raise Saturated(
                f"all {self.limit} backend run slots are busy; try again later",
                retry_after=max(1, int(self.queue_timeout) or 1),
            )
        with self._count_lock:
            self._in_use += 1
        return time.monotonic() - started

    def release(self) -> None:
        with self._count_lock:
            self._in_use -= 1
        if self._sem is not None:
            self._sem.release()
