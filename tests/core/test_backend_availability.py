"""Whether a backend's binary is there, asked from many threads at once.

A CLI that appears while the server runs (installed, or its PATH fixed) must be seen by the
next caller, and one caller's "not found" must never make the backend look missing to
another: only found paths are cached. (A cached miss once made a real-CLI test fail with
"gemini not found" while another thread was running gemini.)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from clinvk.core.backends.gemini import GeminiBackend


def _make_binary(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("#!/bin/sh\nexit 0\n")
    tmp.chmod(0o755)
    os.replace(tmp, path)  # appears atomically, as a package install's rename does


def test_a_binary_that_appears_is_seen_by_every_thread_at_once(tmp_path: Path) -> None:
    backend = GeminiBackend(command="gemini-late", env={"PATH": str(tmp_path)})
    assert backend.executable_path() is None  # asked (and missed) before it exists
    appeared = threading.Event()
    stop = threading.Event()
    misses_after: list[float] = []

    def ask() -> None:
        while not stop.is_set():
            seen_after_appearing = appeared.is_set()
            if backend.executable_path() is None and seen_after_appearing:
                misses_after.append(time.monotonic())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    _make_binary(tmp_path / "gemini-late")
    appeared.set()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert misses_after == []
    assert backend.available


def test_a_cached_path_expires_and_is_looked_up_again_under_load(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _make_binary(first / "gemini-moving")
    backend = GeminiBackend(command="gemini-moving",
                            env={"PATH": f"{first}{os.pathsep}{second}"})
    results: list[str | None] = []
    lock = threading.Lock()

    def ask(ttl: float) -> None:
        for _ in range(300):
            path = backend.executable_path(ttl=ttl)
            with lock:
                results.append(path)

    threads = [threading.Thread(target=ask, args=(0.001,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    _make_binary(second / "gemini-moving")
    (first / "gemini-moving").unlink()  # moves while the cache expires again and again
    for thread in threads:
        thread.join(30)
    assert None not in results  # it was always somewhere on PATH
    assert backend.executable_path(ttl=0) == str(second / "gemini-moving")


def test_a_report_remembers_a_miss_briefly_and_sees_the_cli_after(tmp_path: Path) -> None:
    backend = GeminiBackend(command="gemini-report", env={"PATH": str(tmp_path)})
    assert backend.reported_available(miss_ttl=0.3) is False
    _make_binary(tmp_path / "gemini-report")
    assert backend.available  # a run looks again at once: never the report's memory
    time.sleep(0.35)
    assert backend.reported_available(miss_ttl=0.3) is True


def test_a_report_does_not_walk_path_while_it_remembers_a_miss(tmp_path: Path) -> None:
    backend = GeminiBackend(command="gemini-gone", env={"PATH": str(tmp_path)})
    assert backend.reported_available(miss_ttl=60) is False
    _make_binary(tmp_path / "gemini-gone")
    assert backend.reported_available(miss_ttl=60) is False  # inside the window: not asked
