"""What a command leaves behind: exit codes, one-line errors and notes, a run's printed result.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error, the backend's own exit code
when it fails with one, 124 timeout, 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import enum
from typing import IO, TYPE_CHECKING, Any

import click

from clinvk.cli.render import print_json
from clinvk.core.errors import ClinvkError, ConfigError, InvalidRequest
from clinvk.core.types import RunStatus

if TYPE_CHECKING:
    from clinvk.core.engine import RunResult
    from clinvk.core.events import Event


class ExitCode(enum.IntEnum):
    """The CLI's own exit codes (a failed backend run exits with the backend's code instead)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    TIMEOUT = 124
    INTERRUPTED = 130


class CliError(click.ClickException):
    """An engine error on its way out: one line on stderr, no usage dump."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"clinvk: error: {self.format_message()}", err=True)


def exit_code_for(error: ClinvkError) -> ExitCode:
    if isinstance(error, ConfigError | InvalidRequest):
        return ExitCode.USAGE
    return ExitCode.FAILURE


def note(message: str) -> None:
    """A remark for the person at the terminal: stderr, never mixed into the output."""
    click.echo(f"clinvk: {message}", err=True)


class ResultPrinter:
    """Prints one run in the chosen format: text streams deltas, stream-json every event."""

    def __init__(self, fmt: str, out: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.streamed = False
        self._tail = "\n"

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        if text:
            self._tail = text

    def event(self, event: Event) -> None:
        if self.fmt == "stream-json":
            self._write(event.to_json() + "\n")
        elif self.fmt == "text" and event.type == "message":
            content = event.content
            text = content.get("text") or ""
            if not text or content.get("role", "assistant") != "assistant":
                return
            if not content.get("is_partial") and self.streamed and not self._tail.endswith("\n"):
                self._write("\n")  # separate whole messages (codex items, gemini turns)
            self._write(text)
            self.streamed = True

    def finish(self, result: RunResult, show_tokens: bool, show_timing: bool) -> None:
        if self.fmt == "json":
            data = result.to_dict()
            if result.dry_run:
                data["command"] = result.command
            print_json(data, self.out)
        elif self.fmt == "text":
            if not self.streamed and result.output:
                self._write(result.output)
            if (self.streamed or result.output) and not self._tail.endswith("\n"):
                self._write("\n")
            usage = result.token_usage
            if show_tokens:
                note(f"tokens: {usage.total_tokens} (input {usage.input_tokens}, "
                     f"output {usage.output_tokens})")
            if show_timing:
                note(f"time: {result.duration_ms / 1000:.2f}s")


def exit_for_result(result: RunResult) -> int:
    """The process exit code for a run's result (the backend's own code when it has one)."""
    if result.status == RunStatus.OK:
        return ExitCode.OK
    if result.status == RunStatus.TIMEOUT:
        return ExitCode.TIMEOUT
    if result.status == RunStatus.CANCELLED:
        return ExitCode.INTERRUPTED
    code = result.exit_code
    if code is None or code == 0:
        return ExitCode.FAILURE
    if code < 0:  # killed by a signal: the shell's convention
        return 128 - code
    return code if code < 256 else ExitCode.FAILURE
