"""Options and arguments shared by several commands, and the helpers that read them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from clinvk.core.config import (
    APPROVAL_MODES,
    KNOWN_BACKENDS,
    OUTPUT_FORMATS,
    SANDBOX_MODES,
    clinvk_home,
    key_reference,
)
from clinvk.core.store import default_store_path, open_store

F = TypeVar("F", bound=Callable[..., Any])

backend_choice = click.Choice(KNOWN_BACKENDS, case_sensitive=False)


def run_options(func: F) -> F:
    """Options every backend run understands (root prompt, resume, compare)."""
    for decorator in reversed((
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                     help="Kill the backend after this many seconds (exit 124)."),
        click.option("--approval-mode", type=click.Choice(APPROVAL_MODES),
                     help="How much the agent may do without asking."),
        click.option("--sandbox-mode", type=click.Choice(SANDBOX_MODES),
                     help="What the agent's commands may touch."),
        click.option("--system-prompt", help="Extra system instructions."),
        click.option("--max-turns", type=click.IntRange(min=0),
                     help="Cap agentic turns (claude)."),
    )):
        func = decorator(func)
    return func


def run_fields(opts: dict[str, Any]) -> dict[str, Any]:
    """The :func:`run_options` values as ``PromptRequest`` fields."""
    return {
        "timeout_secs": opts.get("timeout"),
        "approval_mode": opts.get("approval_mode"),
        "sandbox_mode": opts.get("sandbox_mode"),
        "system_prompt": opts.get("system_prompt"),
        "max_turns": opts.get("max_turns"),
    }


def model_option(func: F) -> F:
    return click.option("-m", "--model",
                        help="Model name or alias (fast, balanced, best).")(func)


def output_option(func: F) -> F:
    return click.option(
        "-o", "--output-format", type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
        help="text (streamed), json (one result object) or stream-json (unified events); "
             "default: config output.format (text).")(func)


def dry_run_option(func: F) -> F:
    return click.option("--dry-run", is_flag=True,
                        help="Print the exact command instead of running it.")(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def read_prompt(prompt: str | None) -> str:
    """The prompt argument; ``-`` reads it from stdin. Never read stdin implicitly."""
    if prompt is None:
        raise click.UsageError("missing PROMPT (use - to read it from stdin)")
    if prompt == "-":
        text = click.get_text_stream("stdin").read()
        prompt = text.rstrip("\r\n")
        if not prompt.strip():
            raise click.UsageError("the prompt read from stdin is empty")
    return prompt


def stdin_text() -> str:
    return click.get_text_stream("stdin").read()


def absolute_dir(path: str | None) -> str | None:
    """A -w value made absolute against the current directory (the engine resolves it)."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


def complete_sessions(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """Shell completion of session ids from the local store (silent when there is none)."""
    try:
        path = default_store_path(clinvk_home())
        if not path.exists():
            return []
        page = open_store(path).list(limit=100)
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(s.id[:8], help=f"{s.backend} {s.title}")
            for s in page.sessions if s.id.startswith(incomplete.lower())]


def complete_config_keys(ctx: click.Context, param: click.Parameter,
                         incomplete: str) -> list[str]:
    return [row["key"] for row in key_reference() if row["key"].startswith(incomplete)]
