"""Ctrl-C and SIGTERM during a run: cancel every backend (whole process groups), exit 130.

Runs happen on a worker thread while the main thread only waits, so the interruption always
lands in the main thread, which keeps cancelling until the worker is done.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from clinvk.cli.output import ExitCode, note
from clinvk.core.process import active_runs, terminate_all

T = TypeVar("T")


def run_interruptible(target: Callable[[], T], cancel: Callable[[], None]) -> tuple[T | None, bool]:
    """Run ``target`` on a worker thread; on Ctrl-C/SIGTERM call ``cancel`` until it ends.

    Returns ``(value, interrupted)``. Errors of the target are re-raised here unless the
    run was interrupted (then they are the cancellation's echo and not news).
    """
    value: list[T] = []
    error: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            value.append(target())
        except BaseException as exc:  # handed to the main thread
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="clinvk-run", daemon=True).start()
    interrupted = False
    # Poll with sleep, not Thread.join: a KeyboardInterrupt inside join() can leave the
    # thread marked as stopped while it still runs (CPython 3.11), and we would exit early.
    while not done.is_set():
        try:
            if interrupted:
                cancel()  # repeated while waiting: also catches a process that just started
            time.sleep(0.05)
        except KeyboardInterrupt:  # a second Ctrl-C only cancels again
            interrupted = True
    if error and not interrupted:
        raise error[0]
    return (value[0] if value else None), interrupted


def cancel_all_runs() -> None:
    terminate_all()


def stop_leftover_runs(grace: float = 3.0) -> None:
    """Last resort on an interruption outside :func:`run_interruptible`: no orphans."""
    terminate_all()
    deadline = time.monotonic() + grace
    while active_runs() and time.monotonic() < deadline:
        time.sleep(0.05)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: treated exactly like Ctrl-C."""
    raise KeyboardInterrupt


def interrupted_exit() -> None:
    """Leave after an interruption with the shell's code for it."""
    note("interrupted")
    sys.exit(ExitCode.INTERRUPTED)
