"""The jobs this process holds: its claims on them, renewed while it lives.

A job is claimed by the one gateway process that dispatches it (:meth:`ClaimKeeper.take`)
and stays ``queued`` until its CLI has started (:meth:`ClaimKeeper.started`), so a job whose
gateway dies while it waits for a free agent host is taken over by the next gateway. A
claim names the process (pid, its start time, its node) and expires unless renewed: the
process's own node sees at once that the pid is gone, another node only once the claim
has expired, so a thread renews every held claim three times per lifetime.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from clinvk.core.errors import StoreError
from clinvk.core.store.interface import JobTable

log = logging.getLogger("clinvk.jobs")


class ClaimKeeper:
    def __init__(self, store: JobTable, ttl_secs: float) -> None:
        self.store = store
        self.ttl = float(ttl_secs)
        self._held: set[str] = set()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._renewer_pid = 0  # the process whose renewal thread runs (none after a fork)

    def take(self, job_id: str) -> bool:
        """Claim a queued job for this process; False if it is held (here or by a live
        process elsewhere), or no longer queued."""
        with self._lock:
            if job_id in self._held or not self.store.claim(job_id, os.getpid(), self.ttl):
                return False
            self._held.add(job_id)
            self._ensure_renewer()
            return True

    def started(self, job_id: str) -> bool:
        """The job's (first) run has started: queued -> running. False when the job is no
        longer this process's to run (cancelled while it waited)."""
        with self._lock:
            if job_id in self._running:
                return True
            if not self.store.start(job_id, os.getpid()):
                return False
            self._running.add(job_id)
            return True

    def running(self, job_id: str) -> bool:
        """Whether this process has started the job (see :meth:`started`)."""
        with self._lock:
            return job_id in self._running

    def drop(self, job_id: str) -> None:
        """The job is finished (or given up) here: stop renewing its claim."""
        with self._lock:
            self._held.discard(job_id)
            self._running.discard(job_id)

    def _ensure_renewer(self) -> None:
        if self._renewer_pid == os.getpid():
            return
        self._renewer_pid = os.getpid()
        threading.Thread(target=self._renew_forever, name="clinvk-job-claims",
                         daemon=True).start()

    def _renew_forever(self) -> None:
        pid = os.getpid()
        while pid == os.getpid():
            time.sleep(self.ttl / 3)
            with self._lock:
                held = list(self._held)
            for job_id in held:
                try:
                    self.store.renew_claim(job_id, pid, self.ttl)
                except StoreError as exc:  # the store is down: the next round tries again
                    log.warning("could not renew the claim of job %s: %s", job_id, exc)
