"""Shared machinery of the stub model APIs: a loopback HTTP server, request recording, scripts.

Every stub runs a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` with a free port in a
daemon thread. Each request is recorded (method, path, headers, JSON body, what the stub
answered) before it is answered. What to answer is decided by :func:`decide` from the
conversation the request carries, normalised by each API's module into :class:`Item`\\ s:

* the turn number is the number of user prompts in the history, so a resumed conversation
  that really carried the earlier turns gets "(turn 2)", "(turn 3)", ...;
* the latest prompt may contain a keyword: ``FAIL_401`` / ``FAIL_500`` (that HTTP error),
  ``RUN_TOOL`` (a shell tool call of ``echo hello-from-tool``), ``RUN_SLEEP`` (a shell tool
  call of :attr:`StubServer.sleep_command`, for timeout tests);
* after a tool result the stub answers ``Tool said: <output> (turn N)``.

:attr:`StubServer.force_status` makes every model call fail with that status instead.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOOL_COMMAND = "echo hello-from-tool"
# RUN_SLEEP's command is `sleep 4242.<port>`: unique per running stub, so `ps` can tell its
# processes from anyone else's.
SLEEP_SECONDS = "4242"

FAIL_KEYWORDS = {"FAIL_401": 401, "FAIL_500": 500}


@dataclass
class Item:
    """One normalised conversation entry: kind is prompt, tool_result, assistant or tool_call."""

    kind: str
    text: str = ""


@dataclass
class Reply:
    """What the stub answers to a model call."""

    kind: str  # "text", "tool_call" or "error"
    text: str = ""
    command: str = ""
    status: int = 200
    turn: int = 0
    # A call of a tool other than the shell (an MCP tool): its name and arguments.
    tool: str | None = None
    tool_input: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.kind == "error":
            return f"error {self.status}"
        if self.kind == "tool_call" and self.tool:
            return f"tool_call {self.tool} {json.dumps(self.tool_input)} (turn {self.turn})"
        if self.kind == "tool_call":
            return f"tool_call {self.command!r} (turn {self.turn})"
        return f"text {self.text!r}"


@dataclass
class Recorded:
    """One request the stub received."""

    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    reply: str = ""
    status: int = 0
    at: float = field(default_factory=time.time)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


def tool_output_text(output: Any) -> str:
    """The interesting part of what a CLI sends back as a tool result."""
    if isinstance(output, dict):
        output = output.get("output", output.get("content", json.dumps(output)))
    if isinstance(output, list):
        output = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in output)
    text = str(output)
    text = re.sub(r"</?untrusted_context>", "", text)
    if "Output:" in text:  # codex and gemini wrap the output in a report
        text = text.rsplit("Output:", 1)[1]
        text = text.split("Process Group", 1)[0]
    return text.strip()


def decide(items: list[Item], *, can_run_shell: bool = True,
           sleep_command: str = f"sleep {SLEEP_SECONDS}") -> Reply:
    """The scripted answer to a conversation (see the module docstring)."""
    prompts = [item.text for item in items if item.kind == "prompt"]
    turn = len(prompts)
    if items and items[-1].kind == "tool_result":
        return Reply("text", text=f"Tool said: {items[-1].text} (turn {turn})", turn=turn)
    latest = prompts[-1] if prompts else ""
    for keyword, status in FAIL_KEYWORDS.items():
        if keyword in latest:
            return Reply("error", status=status, turn=turn)
    for keyword, command in (("RUN_SLEEP", sleep_command), ("RUN_TOOL", TOOL_COMMAND)):
        if keyword in latest:
            if not can_run_shell:
                return Reply("text", text=f"No shell tool was offered (turn {turn})", turn=turn)
            return Reply("tool_call", command=command, turn=turn)
    return Reply("text", text=f"Hello from stub (turn {turn})", turn=turn)


def chunks(text: str) -> list[str]:
    """Split a reply into word-sized deltas, as a model would stream it."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [text]


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the recording is the log

    def _dispatch(self) -> None:
        stub = self.server.stub
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        encoding = (self.headers.get("content-encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        parts = urlsplit(self.path)
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        rec = stub.record(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
        )
        try:
            stub.handle(self, rec)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch

    # -- response helpers ---------------------------------------------------------------------

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_empty(self, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def start_sse(self, headers: dict[str, str] | None = None) -> None:
        # No content-length: the stream ends when the connection closes.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True

    def sse(self, data: Any, event: str | None = None) -> None:
        frame = ""
        if event:
            frame += f"event: {event}\n"
        frame += f"data: {json.dumps(data)}\n\n"
        self.wfile.write(frame.encode())
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: StubServer


class StubServer:
    """A stub model API on loopback. Use as a context manager, or start()/stop()."""

    name = "stub"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.force_status: int | None = None
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> StubServer:
        server = _Server(("127.0.0.1", 0), StubHandler)
        server.stub = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"{self.name}-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._server is not None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens (or last listened) on."""
        assert self._port, "stub server was never started"
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sleep_command(self) -> str:
        return f"sleep {SLEEP_SECONDS}.{self.port}"

    # -- recording ----------------------------------------------------------------------------

    def record(self, **fields: Any) -> Recorded:
        with self._lock:
            rec = Recorded(seq=len(self.requests) + 1, **fields)
            self.requests.append(rec)
        return rec

    def model_calls(self) -> list[Recorded]:
        """The requests that asked for a model reply (subclasses say which those are)."""
        return [r for r in self.requests if self.is_model_call(r)]

    def is_model_call(self, rec: Recorded) -> bool:
        return rec.method == "POST"

    def replies(self) -> list[str]:
        return [r.reply for r in self.model_calls()]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- answering ----------------------------------------------------------------------------

    def handle(self, h: StubHandler, rec: Recorded) -> None:
        raise NotImplementedError

    def scripted(self, items: list[Item], *, can_run_shell: bool = True) -> Reply:
        if self.force_status:
            return Reply("error", status=self.force_status)
        return decide(items, can_run_shell=can_run_shell, sleep_command=self.sleep_command)

    def not_found(self, h: StubHandler, rec: Recorded) -> None:
        rec.status, rec.reply = 404, "not found"
        h.send_json(404, {"error": {"message": f"stub has no route {rec.route}"}})
