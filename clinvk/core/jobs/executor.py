"""Where a job runs: the seam between submitting a job and working on it.

A :class:`JobExecutor` is handed a job id and the callable that runs it. The embedded
default is a thread pool in the serving process (nothing but ``clinvk serve`` needed); a
distributed executor (a task queue with its own workers) implements the same two methods
and calls the same ``run`` callable on its side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

log = logging.getLogger("clinvk.jobs")


class JobExecutor(Protocol):
    def submit(self, job_id: str, run: Callable[[str], None]) -> None:
        """Arrange for ``run(job_id)`` to be called once, soon; never block on the run."""

    def shutdown(self) -> None:
        """Stop taking work; runs in progress are left to the process's shutdown."""


class EmbeddedExecutor:
    """A bounded thread pool inside the server process."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clinvk-job")

    def submit(self, job_id: str, run: Callable[[str], None]) -> None:
        def guarded() -> None:
            try:
                run(job_id)
            except Exception:  # a bug in one job must not kill the pool thread silently
                log.exception("job %s crashed", job_id)

        self._pool.submit(guarded)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
