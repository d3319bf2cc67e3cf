"""Running engine work for a tool call: in a worker thread, with progress and cancellation.

A tool call is an async handler on the MCP server's event loop; the engine blocks. Each call
runs its engine work in a thread (``anyio.to_thread``), reports every backend event as an
MCP progress notification (a no-op when the client sent no progress token), and when the
client cancels the request the run's process groups are killed at once (the runner's
TERM → KILL ladder) before the cancellation propagates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context

from clinvk.core.engine import Engine, PromptRequest, RunHandle, RunResult
from clinvk.core.events import Event
from clinvk.core.orchestrate import Cancellation

T = TypeVar("T")

PROGRESS_TEXT_CHARS = 120


def describe(event: Event) -> str:
    """One short line for a progress notification."""
    text = event.content.get("text") or event.content.get("message") or event.content.get(
        "name") or ""
    text = " ".join(str(text).split())
    return f"{event.backend}: {event.type}" + (f": {text[:PROGRESS_TEXT_CHARS]}" if text
                                                 else "")


class ToolRun:
    """The engine work of one tool call; ``cancel()`` may come from the event loop."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cancellation = Cancellation()
        self._progress = 0
        self._lock = threading.Lock()

    def progress(self, message: str) -> None:
        """From the worker thread: one progress notification (never fails the run)."""
        with self._lock:
            self._progress += 1
            step = self._progress
        try:
            anyio.from_thread.run(self.ctx.report_progress, step, None, message)
        except Exception:  # noqa: BLE001 - a lost notification must not end the run
            pass

    def on_event(self, event: Event | None) -> None:
        if event is not None:
            self.progress(describe(event))

    def prompt(self, engine: Engine, req: PromptRequest) -> RunResult:
        """Prepare, start and read one run (in the worker thread)."""
        prepared = engine.prepare(req)
        handle: RunHandle = engine.start(prepared)
        if not self.cancellation.add(handle):
            handle.cancel()  # the call was cancelled while the run was starting
        try:
            for event in handle.events():
                self.on_event(event)
        finally:
            self.cancellation.discard(handle)
            handle.close()
        assert handle.result is not None
        return handle.result

    async def __call__(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread; a cancelled call kills its runs before it returns."""
        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            self.cancellation.cancel_all()
            raise
