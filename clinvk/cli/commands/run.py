"""``clinvk PROMPT`` (the hidden ``run`` command) and ``clinvk resume``: one prompt, one run."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.interrupts import cancel_all_runs, run_interruptible
from clinvk.cli.options import (
    absolute_dir,
    backend_choice,
    complete_sessions,
    dry_run_option,
    model_option,
    output_option,
    read_prompt,
    run_fields,
    run_options,
)
from clinvk.cli.output import ExitCode, ResultPrinter, exit_for_result, note
from clinvk.core.engine import PromptRequest
from clinvk.core.errors import ClinvkError, InvalidRequest, NotFound
from clinvk.core.policy import resolve_workdir


class PromptCommand(click.Command):
    """The hidden ``run`` command, shown to users as ``clinvk [OPTIONS] PROMPT``."""
    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("clinvk", "[OPTIONS] PROMPT")


def execute_prompt(app: AppContext, req: PromptRequest, fmt: str) -> int:
    """Prepare, run and print one prompt; returns the exit code."""
    # A dry run of a new session leaves no record: it only shows what would run.
    dry_run = req.dry_run or app.config.unified_flags.dry_run
    engine = app.engine(with_store=bool(req.session_id) or not dry_run)
    prepared = engine.prepare(req)
    if prepared.request.dry_run and fmt == "text":
        click.echo(f"Would execute: {prepared.command_line}")
        return ExitCode.OK
    printer = ResultPrinter(fmt, click.get_text_stream("stdout"))
    handle = engine.start(prepared)

    def work() -> None:
        for event in handle.events():
            if event is not None:
                printer.event(event)

    def cancel() -> None:
        handle.cancel()
        cancel_all_runs()

    try:
        _, interrupted = run_interruptible(work, cancel)
    finally:
        handle.close()
    if interrupted:
        note("interrupted")
        return ExitCode.INTERRUPTED
    result = handle.result
    assert result is not None
    output = app.config.output
    printer.finish(result, output.show_tokens, output.show_timing)
    if not result.ok:
        click.echo(f"clinvk: error: {result.error}", err=True)
    return exit_for_result(result)


@click.command("run", cls=PromptCommand, hidden=True)
@click.argument("prompt", required=False)
@click.option("-b", "--backend", type=backend_choice,
              help="claude, codex or gemini (default: config default_backend).")
@model_option
@click.option("-w", "--workdir", type=click.Path(file_okay=False),
              help="Directory the agent works in (default: the current one).")
@output_option
@click.option("--ephemeral", is_flag=True, help="Keep no session (nothing to resume).")
@dry_run_option
@click.option("-c", "--continue", "continue_", is_flag=True,
              help="Continue the newest session (with -b: of that backend).")
@run_options
@click.option("-t", "--tag", "tags", multiple=True, help="Tag the new session (repeatable).")
@pass_app
def run_cmd(app: AppContext, prompt: str | None, backend: str | None, model: str | None,
            workdir: str | None, output_format: str | None, ephemeral: bool, dry_run: bool,
            continue_: bool, tags: tuple[str, ...], **opts: Any) -> None:
    """Run PROMPT on a backend (PROMPT `-` reads it from stdin)."""
    prompt = read_prompt(prompt)
    if continue_ and ephemeral:
        raise click.UsageError("--ephemeral starts a throwaway run; it cannot continue a "
                               "session (-c)")
    if continue_ and tags:
        raise click.UsageError("--tag applies to new sessions only")
    fmt = (output_format or app.config.output.format).lower()
    workdir = absolute_dir(workdir)
    session = None
    if continue_:
        session = app.store.latest(backend=backend, resumable=True)
        if session is None:
            scope = f" of backend {backend}" if backend else ""
            raise NotFound(f"no session{scope} to continue; start one with: clinvk PROMPT")
    elif app.config.session.auto_resume and not ephemeral:

        session = app.store.latest(backend=backend or app.config.default_backend,
                                   working_dir=resolve_workdir(workdir), resumable=True)
        if session is not None:
            note(f"continuing session {session.id[:8]} ({session.backend}) because "
                 "session.auto_resume is on; --ephemeral runs without it")
    req = PromptRequest(
        prompt=prompt, backend=backend, model=model, workdir=workdir,
        session_id=session.id if session else None, ephemeral=ephemeral,
        dry_run=dry_run, tags=list(tags),
        **run_fields(opts),
    )
    sys.exit(execute_prompt(app, req, fmt))


# ---------------------------------------------------------------------------- resume


@click.command("resume")
@click.argument("session", required=False, shell_complete=complete_sessions)
@click.argument("prompt", required=False)
@click.option("--last", is_flag=True, help="Resume the most recently used session.")
@click.option("--here", is_flag=True, help="Only sessions started in the current directory.")
@click.option("-b", "--backend", type=backend_choice, help="Only sessions of this backend.")
@model_option
@output_option
@dry_run_option
@run_options
@pass_app
def resume_cmd(app: AppContext, session: str | None, prompt: str | None, last: bool,
               here: bool, backend: str | None, model: str | None, output_format: str | None,
               dry_run: bool, **opts: Any) -> None:
    """Send PROMPT to a stored session (by ID, unique ID prefix, or --last).

    \b
    clinvk resume 3f2a9c1d "now add tests"
    clinvk resume --last "and the docs"
    clinvk resume --last --here -b codex -    (prompt from stdin)

    The run happens in the session's own working directory with the backend's own
    session id.
    """
    if last:
        if prompt is not None:
            raise click.UsageError("with --last give only the PROMPT, not a session ID")
        ident, prompt = None, session
    else:
        if session is None:
            raise click.UsageError("give a session ID (or unique prefix) or --last; "
                                   "see: clinvk sessions list")
        ident = session
    if prompt is None:
        raise click.UsageError(
            "missing PROMPT: resuming sends a new prompt to the session, e.g. "
            f"clinvk resume {ident or '--last'} \"continue\" (use - to read it from stdin)")
    prompt = read_prompt(prompt)
    cwd = os.path.realpath(os.getcwd()) if here else None
    if ident is None:
        found = app.store.latest(backend=backend, working_dir=cwd, resumable=True)
        if found is None:
            filters = [f"backend {backend}"] if backend else []
            if here:
                filters.append(f"directory {cwd}")
            scope = f" ({', '.join(filters)})" if filters else ""
            raise NotFound(f"no resumable session found{scope}")
    else:
        found = app.store.get(ident)
        if backend and found.backend != backend:
            raise InvalidRequest(f"session {found.id[:8]} is a {found.backend} session, "
                                 f"not {backend}")
        if here and found.working_dir != cwd:
            raise InvalidRequest(f"session {found.id[:8]} was started in "
                                 f"{found.working_dir}, not here (--here)")
    if not found.resumable:
        raise ClinvkError(
            f"session {found.id[:8]} cannot be resumed: its backend never reported a "
            "session id (the first run failed early); start a new session instead",
            code="not_resumable")
    fmt = (output_format or app.config.output.format).lower()
    req = PromptRequest(prompt=prompt, session_id=found.id, model=model,
                        dry_run=dry_run,
                        **run_fields(opts))
    sys.exit(execute_prompt(app, req, fmt))
