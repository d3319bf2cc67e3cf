"""Log lines of the server: request ids, text or JSON, secrets kept out.

clinvk's own loggers get :func:`log_handler` (``rid=...`` in text, ``request_id`` in JSON,
``server.log_format``); gunicorn's access and error logs get :func:`gunicorn_logger` (JSON
too when asked; secret query parameters redacted from access lines). The current request
id comes from the app once a worker built it (:func:`use_request_ids`): the gunicorn
master never imports Flask and logs ``-``.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger as GunicornLogger

from clinvk.core.config import Config

_request_id_source: list[Callable[[], str]] = [lambda: "-"]


def use_request_ids(source: Callable[[], str]) -> None:
    """Where log lines find the current request's id (installed by the app)."""
    _request_id_source[0] = source


def current_request_id() -> str:
    return _request_id_source[0]()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the current request's id, ``-`` outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, request_id, message (+ fields)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s " \
              "rid=%(request_id)s"
TEXT_DATEFMT = "%Y-%m-%d %H:%M:%S %z"


def log_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, TEXT_DATEFMT)


def log_handler(config: Config, stream: Any = None) -> logging.Handler:
    """The handler for clinvk's loggers: ``server.log_format`` with the request id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(log_formatter(config.server.log_format))
    handler.addFilter(RequestIdFilter())
    return handler


# Query parameters whose values never reach a log line (compared case-insensitively).
SECRET_QUERY_PARAMS = frozenset({
    "api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token",
    "id_token", "auth", "authorization", "password", "passwd", "secret", "client_secret",
    "signature", "sig", "x-api-key",
})
REDACTED = "[redacted]"


def redact_query(query: str) -> str:
    """``query`` with the value of every secret parameter replaced by ``[redacted]``."""
    if not query:
        return query
    parts = []
    for item in query.split("&"):
        name, sep, _ = item.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_QUERY_PARAMS:
            item = f"{name}={REDACTED}"
        parts.append(item)
    return "&".join(parts)


#: The text access line: client, request line (secrets redacted), status, bytes, ms, id.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


def _response_header(resp: Any, name: str) -> str:
    for key, value in getattr(resp, "headers", None) or []:
        if key.lower() == name:
            return value
    return "-"


#: How long the access-log writer lets lines gather before it writes them (seconds).
ACCESS_FLUSH_SECS = 0.05


class BackgroundLines(logging.Handler):
    """Buffers each record for a writer thread of this process, which writes them in
    batches: request threads never wait for one another on the log's stream (gunicorn's
    access log writes under a lock), and a busy server wakes the writer once per
    :data:`ACCESS_FLUSH_SECS`, not once per request. Records are formatted by the writer
    (access records hold only immutable values).

    The thread starts with the first line in each process (a gunicorn worker is a fork of
    the master) and writes what is buffered before the process exits normally; a process
    killed by SIGKILL loses at most the last flush interval's lines.
    """

    def __init__(self, targets: list[logging.Handler]) -> None:
        super().__init__()
        self.targets = targets
        self._pending: deque[logging.LogRecord] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        """The lines are formatted by the targets: the format goes to them."""
        for target in self.targets:
            target.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            self._start_writer()
        self._pending.append(record)
        if not self._wake.is_set():
            self._wake.set()

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pending = deque()  # never the records a parent process buffered
            self._wake = threading.Event()
            self._stopping = False
            writer = threading.Thread(target=self._write_batches, name="clinvk-access-log",
                                      daemon=True)
            writer.start()
            atexit.register(self._stop, writer)
            self._pid = os.getpid()

    def _write_batches(self) -> None:
        while not self._stopping:
            self._wake.wait()
            time.sleep(ACCESS_FLUSH_SECS)  # let a burst gather into one batch
            self._wake.clear()
            self._write_pending()

    def _write_pending(self) -> None:
        records: list[logging.LogRecord] = []
        while True:
            try:  # the writer and the exit hook may both drain: pop, never test-then-pop
                records.append(self._pending.popleft())
            except IndexError:
                break
        if not records:
            return
        for target in self.targets:
            # exactly these types: a subclass may do more per record (rotation, reopening)
            if type(target) in _BATCHABLE and getattr(target, "stream", None) is not None:
                _write_batch(target, records)
            else:
                for record in records:
                    if record.levelno >= target.level:
                        target.handle(record)

    def _stop(self, writer: threading.Thread) -> None:
        self._stopping = True
        self._wake.set()
        writer.join(timeout=2 * ACCESS_FLUSH_SECS + 1)
        self._write_pending()  # whatever came after the writer's last batch


_BATCHABLE = (logging.StreamHandler, logging.FileHandler)


def _write_batch(target: logging.StreamHandler, records: list[logging.LogRecord]) -> None:
    """A batch's lines as one write to a stream target: each write by this thread gives up
    the GIL and waits to take it back from the request threads (a switch per write)."""
    lines = []
    for record in records:
        if record.levelno >= target.level and target.filter(record):
            try:
                lines.append(target.format(record) + target.terminator)
            except Exception:  # noqa: BLE001 - logging's contract: report, never raise
                target.handleError(record)
    if not lines:
        return
    with target.lock:  # type: ignore[union-attr] - created by Handler.__init__
        try:
            target.stream.write("".join(lines))
            target.flush()
        except Exception:  # noqa: BLE001
            target.handleError(records[-1])


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger, with secret query parameters redacted from access lines, and the
    access lines written by a thread of their own (:class:`BackgroundLines`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        targets = list(self.access_log.handlers)
        if targets:
            self.access_log.handlers[:] = [BackgroundLines(targets)]

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:  # an operator's own format
            super().access(resp, req, environ, request_time)
            return
        # clinvk's format, built from the five values it shows (gunicorn's generic path
        # first collects every atom and header of the request and the response).
        query = environ.get("QUERY_STRING", "")
        uri = environ.get("RAW_URI", "")
        if query:
            uri = uri.split("?", 1)[0] + "?" + redact_query(query)
        status = getattr(resp, "status_code", None) or str(resp.status).split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        line = (f'{environ.get("REMOTE_ADDR", "-")} "{environ.get("REQUEST_METHOD")} {uri} '
                f'{environ.get("SERVER_PROTOCOL")}" {status} '
                f'{"-" if sent is None else sent} {int(request_time.total_seconds() * 1000)}ms '
                f"rid={_response_header(resp, 'x-request-id')}")
        try:
            self.access_log.info("%s", line)
        except Exception:  # noqa: BLE001 - a log line must not break the response
            self.error("access log line failed")

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        query = environ.get("QUERY_STRING", "")
        if query:
            safe = redact_query(query)
            atoms["q"] = safe
            atoms["r"] = (f"{environ.get('REQUEST_METHOD')} {environ.get('RAW_URI', '')}"
                          .split("?", 1)[0] + f"?{safe} {environ.get('SERVER_PROTOCOL')}")
        return atoms


class JsonGunicornLogger(RedactingGunicornLogger):
    """gunicorn's logger with JSON lines (``server.log_format: json``).

    Access lines carry method, path (no query string), status, bytes, duration_ms,
    remote_addr and the request id the app answered with; never request headers.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        request_id = _response_header(resp, "x-request-id")
        status = getattr(resp, "status_code", None)
        if status is None:
            status = str(getattr(resp, "status", "") or "").partition(" ")[0] or None
        fields = {
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if str(status or "").isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info("request", extra={"fields": fields,
                                                   "request_id": request_id})
        except Exception:  # noqa: BLE001 - a log line must not break the response
            self.error("access log line failed")


def gunicorn_logger(log_format: str) -> type[GunicornLogger]:
    """gunicorn's ``logger_class`` for ``server.log_format``."""
    return JsonGunicornLogger if log_format == "json" else RedactingGunicornLogger
