"""Streaming a run to an HTTP client, frame by frame (NDJSON here, SSE for the compat APIs).

The rules every streaming route follows:

* Everything that can fail *before* the stream starts (validation, policy, unknown
  session, busy, saturated, unavailable) is raised in the view and becomes a normal HTTP
  error; :func:`stream_response` is only called with a started :class:`RunHandle`.
* Each event is rendered to one frame and yielded at once; gunicorn's ``gthread`` worker
  writes every yielded chunk straight to the socket (chunked encoding), and
  ``X-Accel-Buffering: no`` asks nginx not to hold it back.
* Exactly one terminal frame ends the stream: the engine's own ``done``/``error`` event,
  or, if something escapes mid-stream, an error frame made here.
* The client going away stops the backend: a failed write closes the generator, the
  heartbeat notices a closed socket even while the backend is silent, and
  ``call_on_close(handle.close)`` covers the rest. Closing the handle kills the backend's
  whole process group.

Renderers are plain callables, so the OpenAI/Anthropic blueprints reuse
:func:`event_frames` / :func:`stream_response` with their own SSE framing.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flask import Response

from clinvk.core import events
from clinvk.core.engine import RunHandle
from clinvk.core.errors import ClinvkError
from clinvk.core.events import Event
from clinvk.server.errors import INTERNAL_CODES, internal_message

log = logging.getLogger("clinvk.server")

NDJSON_MIMETYPE = "application/x-ndjson"
SSE_MIMETYPE = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# How often a silent stream (or a JSON request waiting for its run) checks whether its
# client is still there. With the runner's kill grace this bounds how long a backend
# outlives its client: poll + grace < 1 s (docs/performance.md).
DISCONNECT_POLL_SECS = 0.2

Render = Callable[[Event], "bytes | str | Iterable[bytes | str] | None"]


class ClientWatch:
    """Tells whether the HTTP client hung up, without reading its data.

    Works on the raw socket gunicorn puts in the WSGI environ; elsewhere (test client,
    other servers) it never reports a disconnect and the write failure path applies.
    """

    def __init__(self, environ: Mapping[str, Any] | None) -> None:
        sock = (environ or {}).get("gunicorn.socket")
        self._sock = sock if isinstance(sock, socket.socket) else None
        self._checked = 0.0
        self._gone = False

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def gone(self, *, min_interval: float = 0.0) -> bool:
        if self._sock is None or self._gone:
            return self._gone
        now = time.monotonic()
        if now - self._checked < min_interval:
            return False
        self._checked = now
        try:
            if _readable(self._sock) and self._sock.recv(1, socket.MSG_PEEK) == b"":
                self._gone = True  # orderly close (FIN): nobody will read our answer
        except (OSError, ValueError):  # reset, or the socket is closed already
            self._gone = True
        return self._gone


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has data, a FIN or an error pending (never blocks).

    ``poll``, not ``select``: a busy worker holds more than 1024 descriptors (200 streams
    at once are 200 client sockets plus each backend's pipes plus each thread's SQLite
    files), and ``select`` refuses any descriptor above 1023 with a ValueError, which
    read as "client gone" and cut 25 of 200 concurrent streams off without their end.
    """
    if not hasattr(select, "poll"):  # pragma: no cover - not on Linux or macOS
        return bool(select.select([sock], [], [], 0)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _encode(frame: bytes | str) -> bytes:
    return frame.encode("utf-8") if isinstance(frame, str) else frame


def error_event(handle: RunHandle, exc: BaseException, sequence: int) -> Event:
    """A terminal ``error`` event for a failure the engine did not turn into one."""
    if isinstance(exc, ClinvkError) and exc.code not in INTERNAL_CODES:
        code, message = exc.code, exc.message
    elif isinstance(exc, ClinvkError):
        # Same rule as a JSON 500: internals (paths, SQL) go to the log, not the client.
        log.error("stream of a %s run failed: %s: %s", handle.prepared.backend.name,
                  exc.code, exc.message)
        code, message = exc.code, internal_message(exc)
    else:
        code, message = "internal_error", "internal server error; see the server log"
    session = handle.session
    return Event(
        events.ERROR,
        {"code": code, "message": message},
        backend=handle.prepared.backend.name,
        session_id=session.id if session is not None and not handle.prepared.ephemeral else None,
        timestamp=events.utc_timestamp(),
        sequence=sequence,
    )


def event_frames(
    handle: RunHandle,
    render: Render,
    *,
    environ: Mapping[str, Any] | None = None,
    keepalive_secs: float | None = None,
    keepalive_frame: bytes | str | None = None,
) -> Iterator[bytes]:
    """Frames for every event of ``handle``; ends with exactly one terminal event.

    ``render`` maps an event to a frame, several frames, or ``None`` (skip). With
    ``keepalive_frame``, it is sent whenever nothing was written for ``keepalive_secs``.
    """
    watch = ClientWatch(environ)
    heartbeat: float | None = None
    if watch.enabled:
        heartbeat = DISCONNECT_POLL_SECS
    if keepalive_frame is not None and keepalive_secs:
        heartbeat = min(heartbeat or keepalive_secs, keepalive_secs)
    last_write = time.monotonic()
    sequence = 0
    terminal = False
    stream = handle.events(heartbeat=heartbeat)
    try:
        try:
            for event in stream:
                if event is None:
                    if watch.gone():
                        log.info("client went away; stopping the %s run",
                                 handle.prepared.backend.name)
                        return
                    if (keepalive_frame is not None and keepalive_secs
                            and time.monotonic() - last_write >= keepalive_secs):
                        last_write = time.monotonic()
                        yield _encode(keepalive_frame)
                    continue
                sequence = max(sequence, event.sequence)
                terminal = terminal or event.is_terminal
                frames = _frames(render(event))
                if not frames:
                    continue
                for frame in frames:
                    last_write = time.monotonic()
                    yield frame
                if watch.gone(min_interval=DISCONNECT_POLL_SECS):
                    return
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream must end with an error frame
            if not isinstance(exc, ClinvkError):
                log.exception("stream of a %s run failed", handle.prepared.backend.name)
            if not terminal:
                terminal = True
                yield from _frames(render(error_event(handle, exc, sequence + 1)))
    finally:
        stream.close()  # records an interrupted run and kills its process group
        handle.close()


def _frames(rendered: bytes | str | Iterable[bytes | str] | None) -> list[bytes]:
    """What a renderer returned for one event, as the frames to write (none for ``None``)."""
    if rendered is None:
        return []
    chunks = [rendered] if isinstance(rendered, bytes | str) else rendered
    return [_encode(chunk) for chunk in chunks]


def ndjson_frame(event: Event) -> bytes:
    return (event.to_json() + "\n").encode("utf-8")


def stream_response(
    handle: RunHandle,
    frames: Iterator[bytes],
    *,
    mimetype: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A streaming response whose closing (normal end or client gone) closes ``handle``."""
    response = Response(frames, status=200, mimetype=mimetype, direct_passthrough=True)
    for key, value in {**STREAM_HEADERS, **(headers or {})}.items():
        response.headers[key] = value
    response.call_on_close(handle.close)
    return response


def ndjson_response(handle: RunHandle, environ: Mapping[str, Any] | None = None) -> Response:
    """The native NDJSON stream of unified events (docs/api.md, Streaming)."""
    return stream_response(handle, event_frames(handle, ndjson_frame, environ=environ),
                           mimetype=NDJSON_MIMETYPE)


def run_to_completion(handle: RunHandle, environ: Mapping[str, Any] | None = None) -> None:
    """Drive a non-streaming run; stop the backend if the client hangs up meanwhile."""
    watch = ClientWatch(environ)
    stream = handle.events(heartbeat=DISCONNECT_POLL_SECS if watch.enabled else None)
    cancelled = False
    try:
        for _ in stream:
            if not cancelled and watch.gone(min_interval=DISCONNECT_POLL_SECS):
                cancelled = True
                log.info("client went away; stopping the %s run", handle.prepared.backend.name)
                handle.cancel()
    finally:
        stream.close()
        handle.close()
