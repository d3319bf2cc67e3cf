"""The gunicorn worker of ``clinvk serve``: gthread, plus a deadline on a request's head.

gunicorn's gthread worker reads a request's line and headers with a blocking socket and no
time limit once the first byte has arrived, so a client that sends a partial head and then
trickles or stalls (slowloris) keeps a pool thread for as long as it likes; a few dozen such
connections take every thread and the gateway stops answering anyone. The app's own socket
timeouts (``server.read_timeout_secs`` per body read) only start once the head is complete.

:class:`GatewayWorker` gives every request ``server.read_timeout_secs`` to deliver its whole
head, counted from the moment a pool thread takes the connection. A watchdog thread shuts
the reading side of an overdue connection down, so the blocked read returns, gunicorn sees
a client that went away and closes the connection without occupying the thread any longer.
A stopping worker closes connections whose head is unfinished at once instead of waiting
out ``graceful_timeout_secs`` for them.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

#: How often the watchdog looks for overdue heads (also the slack on the deadline).
CHECK_INTERVAL_SECS = 1.0


class GatewayWorker(ThreadWorker):
    """gunicorn's gthread worker with a deadline on reading each request's head."""

    #: Seconds a request may take to deliver its head; 0 = no limit (see :func:`worker_class`).
    head_timeout: float = 0.0

    def init_process(self) -> None:
        # connection -> monotonic deadline, for every connection whose head is being read
        self._heads: dict[Any, float] = {}
        self._heads_lock = threading.Lock()
        if self.head_timeout > 0:
            threading.Thread(target=self._watch_heads, name="clinvk-head-watchdog",
                             daemon=True).start()
        super().init_process()  # runs the worker's loop until it exits

    def handle(self, conn: Any) -> Any:
        if self.head_timeout <= 0:
            return super().handle(conn)
        with self._heads_lock:
            self._heads[conn] = time.monotonic() + self.head_timeout
        try:
            return super().handle(conn)
        finally:
            with self._heads_lock:
                self._heads.pop(conn, None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        # The head is complete: from here on the app's body and write timeouts apply.
        with self._heads_lock:
            self._heads.pop(conn, None)
        return super().handle_request(req, conn)

    def _watch_heads(self) -> None:
        # Runs until the process exits (daemon thread): while a stopping worker waits for its
        # connections, an unfinished head is no request in progress, so it is closed at once.
        while True:
            time.sleep(CHECK_INTERVAL_SECS)
            now, stopping = time.monotonic(), not self.alive
            with self._heads_lock:
                overdue = [conn for conn, deadline in self._heads.items()
                           if stopping or deadline <= now]
                for conn in overdue:
                    del self._heads[conn]
            for conn in overdue:
                reason = ("the worker is stopping" if stopping else
                          f"no complete request head within {self.head_timeout:g} s "
                          "(server.read_timeout_secs)")
                self.log.warning("closing the connection from %s: %s", _peer(conn), reason)
                try:
                    conn.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # already closed by its thread


def worker_class(head_timeout: float) -> type[GatewayWorker]:
    """The worker class for gunicorn's ``worker_class`` setting, with its head deadline."""
    return type("GatewayWorker", (GatewayWorker,), {"head_timeout": float(head_timeout or 0)})


def _peer(conn: Any) -> str:
    client = getattr(conn, "client", None)
    if isinstance(client, tuple) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    return str(client or "?")
