"""Terminal rendering for the CLI: rich tables, live progress, relative times.

Everything here only formats; it never runs a backend or touches the store. Tables go
through rich; when stdout is not a terminal the console is made wide and colourless so
piped output stays one row per line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from clinvk.core.types import RunStatus, SessionStatus, TaskState

if TYPE_CHECKING:
    from clinvk.core.orchestrate import JobReport, TaskOutcome

# Colours for run, task and session statuses (the values compare equal to the plain strings).
STATUS_STYLES: dict[str, str] = {
    RunStatus.OK: "green",
    SessionStatus.COMPLETED: "green",
    TaskState.RUNNING: "cyan",
    TaskState.PENDING: "dim",
    SessionStatus.ACTIVE: "cyan",
    RunStatus.FAILED: "red",
    SessionStatus.ERROR: "red",
    RunStatus.TIMEOUT: "yellow",
    RunStatus.CANCELLED: "yellow",
    TaskState.SKIPPED: "dim",
    SessionStatus.PAUSED: "yellow",
}


def make_console(stream: IO[str] | None = None, *, color: bool = True) -> Console:
    stream = stream or sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        return Console(file=stream, highlight=False, no_color=not color)
    # Piped: no colour, no wrapping of table rows at 80 columns.
    return Console(file=stream, highlight=False, color_system=None, width=200,
                   soft_wrap=True)


def styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def time_ago(timestamp: str, now: float | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; a date beyond a week."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    delta = (time.time() if now is None else now) - moment.timestamp()
    if delta < 60:
        return "just now" if delta < 1 else f"{int(delta)}s ago"
    if delta < 3600:
        return f"{int(delta // 60)}m ago"
    if delta < 86400:
        return f"{int(delta // 3600)}h ago"
    if delta < 7 * 86400:
        return f"{int(delta // 86400)}d ago"
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def seconds(ms: int | float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def one_line(text: str, limit: int) -> str:
    """First line, whitespace collapsed, cut by characters (never mid-UTF-8)."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


# ---------------------------------------------------------------------------- sessions


def sessions_table(sessions: Sequence[Any]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("BACKEND", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("LAST USED", no_wrap=True)
    table.add_column("TURNS", justify="right", no_wrap=True)
    table.add_column("TOKENS", justify="right", no_wrap=True)
    table.add_column("TITLE", overflow="ellipsis", no_wrap=True, max_width=60)
    for s in sessions:
        total = s.token_usage.total_tokens
        table.add_row(s.id[:8], s.backend, styled(s.status), time_ago(s.last_used),
                      str(s.turn_count), str(total) if total else "-",
                      escape(s.title or one_line(s.initial_prompt, 60) or "-"))
    return table


def session_details(s: Any) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    usage = s.token_usage
    rows: list[tuple[str, Any]] = [
        ("ID", s.id),
        ("Backend", s.backend),
        ("Backend session", s.backend_session_id or "- (not resumable)"),
        ("Model", s.model or "(backend default)"),
        ("Status", styled(s.status)),
        ("Title", s.title or "-"),
        ("Working dir", s.working_dir),
        ("Created", f"{s.created_at} ({time_ago(s.created_at)})"),
        ("Last used", f"{s.last_used} ({time_ago(s.last_used)})"),
        ("Turns", str(s.turn_count)),
        ("Tokens", f"{usage.total_tokens} (input {usage.input_tokens}, output "
                   f"{usage.output_tokens}, cached {usage.cached_tokens}, reasoning "
                   f"{usage.reasoning_tokens})"),
    ]
    if usage.cost_usd is not None:
        rows.append(("Cost", f"${usage.cost_usd:.4f}"))
    if s.tags:
        rows.append(("Tags", ", ".join(s.tags)))
    if s.metadata:
        rows.append(("Metadata", json.dumps(s.metadata, ensure_ascii=False)))
    if s.parent_id:
        rows.append(("Parent", s.parent_id))
    if s.error_message:
        rows.append(("Error", s.error_message))
    rows.append(("Prompt", s.initial_prompt))
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else escape(str(value)))
    return table


# ---------------------------------------------------------------------------- progress


class ProgressView:
    """Live per-task progress for parallel / chain / compare.

    ``update`` is the orchestrator's ``on_update`` callback and may be called from any
    thread. On a terminal a rich Live table is redrawn a few times a second (elapsed time
    ticks); otherwise one plain line is printed whenever a task changes state.
    """

    def __init__(self, labels: Sequence[tuple[str, str]], stream: IO[str] | None,
                 *, live: bool, title: str) -> None:
        self.labels = list(labels)  # (backend, label) per task
        self.states: list[str] = [TaskState.PENDING] * len(self.labels)
        self.started: list[float | None] = [None] * len(self.labels)
        self.ended: list[float | None] = [None] * len(self.labels)
        self.stream = stream
        self.title = title
        self._lock = threading.Lock()
        self._live: Live | None = None
        if stream is not None and live:
            console = make_console(stream)
            self._live = Live(self, console=console, refresh_per_second=4, transient=False,
                              redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> ProgressView:
        if self._live is not None:
            self._live.__enter__()
        elif self.stream is not None:
            self._plain(self.title)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)

    def _plain(self, line: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def elapsed(self, index: int) -> float | None:
        start = self.started[index]
        if start is None:
            return None
        return (self.ended[index] or time.monotonic()) - start

    def update(self, index: int, state: str, outcome: TaskOutcome | None) -> None:
        with self._lock:
            now = time.monotonic()
            if state == TaskState.RUNNING:
                self.started[index] = now
            else:
                if self.started[index] is None:
                    self.started[index] = now
                self.ended[index] = now
            if outcome is not None and outcome.result is not None:
                # Prefer the engine's own measure of the run.
                self.ended[index] = self.started[index] + outcome.result.duration_ms / 1000
            self.states[index] = state
            line = self._line(index, outcome)
        if self._live is None and self.stream is not None:
            self._plain(line)

    def _line(self, index: int, outcome: TaskOutcome | None) -> str:
        backend, label = self.labels[index]
        state = self.states[index]
        width = len(str(len(self.labels)))
        parts = [f"[{index + 1:>{width}}/{len(self.labels)}]", f"{backend:<7}", f"{state:<9}"]
        took = self.elapsed(index)
        if state != TaskState.RUNNING and took is not None:
            parts.append(f"{took:5.1f}s")
        if label:
            parts.append(label)
        if outcome is not None and outcome.error and state != "ok":
            parts.append(f"- {one_line(outcome.error, 100)}")
        return " ".join(parts)

    def __rich__(self) -> Table:
        table = Table(box=None, pad_edge=False, title=self.title, title_justify="left",
                      title_style="bold")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("BACKEND", no_wrap=True)
        table.add_column("STATUS", no_wrap=True)
        table.add_column("ELAPSED", justify="right", no_wrap=True)
        table.add_column("TASK", overflow="ellipsis", no_wrap=True)
        with self._lock:
            for i, (backend, label) in enumerate(self.labels):
                took = self.elapsed(i)
                table.add_row(str(i + 1), backend, styled(self.states[i]),
                              "-" if took is None else f"{took:.1f}s", escape(label))
        return table


# ---------------------------------------------------------------------------- results


def outcome_exit(outcome: TaskOutcome) -> str:
    if outcome.result is None or outcome.result.exit_code is None:
        return "-"
    return str(outcome.result.exit_code)


def print_outputs(console: Console, report: JobReport, labels: Sequence[tuple[str, str]],
                  *, heading: str | None) -> None:
    """Each task's output (or error) under a one-line header, in input order."""
    for outcome, (backend, label) in zip(report.outcomes, labels, strict=True):
        took = seconds(outcome.result.duration_ms) if outcome.result else "-"
        number = f"{heading} {outcome.index + 1}: " if heading else ""
        header = Text.assemble((f"== {number}", "bold"), (backend, "bold"), " ",
                               styled(outcome.status), f" {took}")
        if label:
            header.append(f"  {label}")
        console.print(header)
        if outcome.output:
            console.print(Text(outcome.output.rstrip("\n")))
        if outcome.error and not outcome.ok:
            console.print(Text(f"error: {outcome.error}", style="red"))
        console.print()


def summary_line(report: JobReport, noun: str) -> str:
    total = len(report.outcomes)
    skipped = sum(1 for o in report.outcomes if o.status == TaskState.SKIPPED)
    parts = [f"{report.completed} ok", f"{report.failed} failed"]
    if report.cancelled:
        parts.append(f"{report.cancelled} cancelled")
    if skipped:
        parts.append(f"{skipped} skipped")
    return f"{total} {noun}{'s' if total != 1 else ''}: {', '.join(parts)} " \
           f"in {seconds(report.total_duration_ms)}"


def compare_table(report: JobReport) -> Table:
    """Backends side by side: one column each, one row per measure."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("")
    for outcome in report.outcomes:
        table.add_column(outcome.backend or "?", no_wrap=True)
    rows: dict[str, list[Any]] = {"status": [], "time": [], "tokens (in/out)": [],
                                  "exit": [], "model": []}
    for o in report.outcomes:
        r = o.result
        rows["status"].append(styled(o.status))
        rows["time"].append(seconds(r.duration_ms) if r else "-")
        rows["tokens (in/out)"].append(
            f"{r.token_usage.input_tokens}/{r.token_usage.output_tokens}" if r else "-")
        rows["exit"].append(outcome_exit(o))
        rows["model"].append(escape((r.model if r else o.model) or "(default)"))
    for name, cells in rows.items():
        table.add_row(Text(name, style="bold"), *cells)
    return table
