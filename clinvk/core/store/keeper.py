"""Keeps this process's turn leases alive while their turns run (the lease heartbeat).

A turn lease is taken with a short expiry (``session.lease_timeout_secs``) and renewed by
one background thread per process every third of it, for as long as the turn runs. So a
holder that dies or freezes — a gateway on another machine whose pid nobody here can judge,
a frozen VM, a network partition — stops renewing, and its session is free for any
gateway within that bound instead of after the run's whole timeout. The cost: a holder
that cannot renew for that long (stalled, or the store unreachable) loses its lease while
its CLI may still run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from clinvk.core.errors import SessionBusy, StoreError
from clinvk.core.store.interface import SessionLease

__all__ = ["LEASE_KEEPER", "LeaseKeeper"]

log = logging.getLogger("clinvk.store")

#: How often the keeper looks at its leases; each is renewed once a third of its ttl passed.
TICK_SECS = 1.0


class LeaseKeeper:
    """Renews every lease handed to :meth:`keep` until :meth:`drop` (or it is released)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[int, tuple[SessionLease, float]] = {}  # id -> (lease, renewed)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def keep(self, lease: SessionLease) -> None:
        with self._lock:
            self._leases[id(lease)] = (lease, self._clock())
            self._ensure_thread()

    def drop(self, lease: SessionLease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def held(self) -> int:
        with self._lock:
            return len(self._leases)

    def tick(self) -> None:
        """Renew every lease that is due; forget those given back or lost."""
        now = self._clock()
        with self._lock:
            due = [(key, lease) for key, (lease, renewed) in self._leases.items()
                   if now - renewed >= lease.ttl_seconds / 3]
        for key, lease in due:
            if not lease.held:
                self._forget(key, lease)
                continue
            try:
                lease.renew()
            except SessionBusy:
                # Taken over: this holder was silent for longer than the ttl and another
                # turn may run now. Nothing to renew any more.
                log.error("the lease on session %s expired before it was renewed and was "
                          "taken over; this turn no longer holds the session",
                          lease.session_id)
                self._forget(key, lease)
                continue
            except StoreError as exc:  # retried at the next tick; expires if it persists
                log.warning("could not renew the lease on session %s: %s",
                            lease.session_id, exc)
                continue
            with self._lock:
                if key in self._leases:
                    self._leases[key] = (lease, self._clock())

    def _forget(self, key: int, lease: SessionLease) -> None:
        with self._lock:
            if self._leases.get(key, (None,))[0] is lease:
                del self._leases[key]

    def _ensure_thread(self) -> None:
        """Started on first use, again in a forked child (threads do not survive a fork)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="clinvk-lease-keeper",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._wake.wait(TICK_SECS):
            try:
                self.tick()
            except Exception:  # never let one bad lease stop the heartbeat of the others
                log.exception("renewing session leases failed")


#: The process's keeper: the engine hands it every turn lease it takes.
LEASE_KEEPER = LeaseKeeper()


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's leases and has no keeper thread yet."""
    LEASE_KEEPER._lock = threading.Lock()
    LEASE_KEEPER._leases.clear()
    LEASE_KEEPER._thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
