"""The access log's writer thread: lines leave the request threads at once, reach the log
in batches written by one thread, and are all written when the process exits, in a
gunicorn worker (a fork) as in the master."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from clinvk.server.runtime.logs import ACCESS_FLUSH_SECS, BackgroundLines

REPO = Path(__file__).resolve().parents[3]


class Collect(logging.Handler):
    """Keeps each written line with the name of the thread that wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((threading.current_thread().name, self.format(record)))


def _logger(target: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test.access.{id(target)}")
    logger.propagate = False
    logger.addHandler(BackgroundLines([target]))
    logger.setLevel(logging.INFO)
    return logger


def test_lines_of_many_threads_are_written_by_the_writer_each_once_in_order() -> None:
    target = Collect()
    logger = _logger(target)

    def requests(n: int) -> None:
        for i in range(200):
            logger.info("%s", f"t{n} line {i}")

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 5
    while len(target.lines) < 1600 and time.monotonic() < deadline:
        time.sleep(ACCESS_FLUSH_SECS)
    assert {name for name, _ in target.lines} == {"clinvk-access-log"}
    for n in range(8):
        mine = [line for _, line in target.lines if line.startswith(f"t{n} ")]
        assert mine == [f"t{n} line {i}" for i in range(200)]


def test_a_format_set_on_the_handler_is_the_targets() -> None:
    target = Collect()
    logger = _logger(target)
    logger.handlers[0].setFormatter(logging.Formatter("<%(message)s>"))
    logger.info("%s", "formatted")
    deadline = time.monotonic() + 5
    while not target.lines and time.monotonic() < deadline:
        time.sleep(ACCESS_FLUSH_SECS)
    assert target.lines == [("clinvk-access-log", "<formatted>")]


def test_buffered_lines_are_written_at_exit_by_a_fork_and_by_its_parent() -> None:
    script = textwrap.dedent("""
        import logging, os, sys
        from clinvk.server.runtime.logs import BackgroundLines
        out = logging.StreamHandler(sys.stdout)
        logger = logging.getLogger("access")
        logger.addHandler(BackgroundLines([out]))
        logger.setLevel(logging.INFO)
        logger.info("%s", "master before fork")
        pid = os.fork()
        if pid == 0:
            for i in range(50):
                logger.info("%s", f"worker {i}")
            sys.exit(0)  # a gunicorn worker exits like this: atexit handlers run
        os.waitpid(pid, 0)
        logger.info("%s", "master after")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.count("master before fork") == 1  # the child never rewrites its parent's
    assert [line for line in lines if line.startswith("worker")] == \
        [f"worker {i}" for i in range(50)]
    assert lines[-1] == "master after"


def test_a_batch_reaches_a_stream_in_one_write_and_others_line_by_line(tmp_path) -> None:
    """A stream (stdout, a log file) gets each batch as one write; a handler that does more
    per record (here: a rotating file) still gets every record through its own emit."""
    import logging.handlers

    class Counting:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> None:
            self.writes.append(text)

        def flush(self) -> None:
            pass

    stream = Counting()
    plain = logging.StreamHandler(stream)  # type: ignore[arg-type]
    rotating = logging.handlers.RotatingFileHandler(tmp_path / "access.log")
    handler = BackgroundLines([plain, rotating])
    handler.setFormatter(logging.Formatter("<%(message)s>"))
    records = [logging.LogRecord("a", logging.INFO, __file__, 1, f"line {i}", None, None)
               for i in range(50)]
    handler._pending.extend(records)
    handler._write_pending()
    rotating.close()
    assert stream.writes == ["".join(f"<line {i}>\n" for i in range(50))]
    assert (tmp_path / "access.log").read_text() == "".join(f"<line {i}>\n" for i in range(50))
