"""The `clinvk` command line: a thin click layer over the engine.

`clinvk [OPTIONS] PROMPT` runs a prompt; every other first word names a subcommand.
Exit codes: 0 ok, 1 failure, 2 usage or configuration error, the backend's own exit code
when it fails with one, 124 timeout, 130 interrupted (Ctrl-C or SIGTERM).

Runs happen on a worker thread while the main thread only waits: a Ctrl-C or SIGTERM
lands in the main thread, which cancels every running backend (their whole process
groups) and exits 130 once they are gone.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any, TypeVar

import click

from clinvk import __version__
from clinvk.cli.commands import REGISTRY
from clinvk.core.config import APPROVAL_MODES, KNOWN_BACKENDS, OUTPUT_FORMATS, SANDBOX_MODES
from clinvk.core.errors import ClinvkError, ConfigError, InvalidRequest, NotFound
from clinvk.core.sessions import STATUSES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

T = TypeVar("T")


# ---------------------------------------------------------------------------- plumbing


class AppContext:
    """Lazily built config, store and engines for one command invocation."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config = None
        self._store = None
        self._engines: dict[bool, Any] = {}

    @property
    def config(self):
        if self._config is None:
            from clinvk.core.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self):
        if self._store is None:
            from clinvk.core.config import clinvk_home
            from clinvk.core.sessions import SessionStore, default_store_path

            self._store = SessionStore(default_store_path(clinvk_home()))
        return self._store

    def engine(self, *, with_store: bool = True):
        """The engine; ``with_store=False`` for runs that must leave no session behind."""
        if with_store not in self._engines:
            from clinvk.core.engine import Engine

            self._engines[with_store] = Engine(self.config, self.store if with_store else None)
        return self._engines[with_store]


class CliError(click.ClickException):
    """An engine error on its way out: one line on stderr, no usage dump."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"clinvk: error: {self.format_message()}", err=True)


def exit_code_for(error: ClinvkError) -> int:
    if isinstance(error, ConfigError | InvalidRequest):
        return EXIT_USAGE
    return EXIT_FAILURE


def note(message: str) -> None:
    click.echo(f"clinvk: {message}", err=True)


def run_interruptible(target: Callable[[], T], cancel: Callable[[], None]) -> tuple[T | None, bool]:
    """Run ``target`` on a worker thread; on Ctrl-C/SIGTERM call ``cancel`` until it ends.

    Returns ``(value, interrupted)``. Errors of the target are re-raised here unless the
    run was interrupted (then they are the cancellation's echo and not news).
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = target()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc
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
    if "error" in box and not interrupted:
        raise box["error"]
    return box.get("value"), interrupted


def cancel_all_runs() -> None:
    from clinvk.core.process import terminate_all

    terminate_all()


def stop_leftover_runs(grace: float = 3.0) -> None:
    """Last resort on an interruption outside :func:`run_interruptible`: no orphans."""
    if "clinvk.core.process" not in sys.modules:
        return  # nothing was ever started
    from clinvk.core.process import active_runs, terminate_all

    terminate_all()
    deadline = time.monotonic() + grace
    while active_runs() and time.monotonic() < deadline:
        time.sleep(0.05)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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


def absolute_dir(path: str | None) -> str | None:
    """A -w value made absolute against the current directory (the engine resolves it)."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


# ---------------------------------------------------------------------------- completion


def _complete_sessions(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    from click.shell_completion import CompletionItem

    try:
        from clinvk.core.config import clinvk_home
        from clinvk.core.sessions import SessionStore, default_store_path

        path = default_store_path(clinvk_home())
        if not path.exists():
            return []
        page = SessionStore(path).list(limit=100)
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(s.id[:8], help=f"{s.backend} {s.title}")
            for s in page.sessions if s.id.startswith(incomplete.lower())]


def _complete_config_keys(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    from clinvk.core.config import key_reference

    return [row["key"] for row in key_reference() if row["key"].startswith(incomplete)]


# ---------------------------------------------------------------------------- options

backend_choice = click.Choice(KNOWN_BACKENDS, case_sensitive=False)


def run_options(func: Callable) -> Callable:
    """Options every backend run understands (root prompt, resume, parallel defaults...)."""
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


def model_option(func: Callable) -> Callable:
    return click.option("-m", "--model",
                        help="Model name or alias (fast, balanced, best).")(func)


def output_option(func: Callable) -> Callable:
    return click.option(
        "-o", "--output-format", type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
        help="text (streamed), json (one result object) or stream-json (unified events); "
             "default: config output.format (text).")(func)


def dry_run_option(func: Callable) -> Callable:
    return click.option("--dry-run", is_flag=True,
                        help="Print the exact command instead of running it.")(func)


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _run_fields(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "timeout_secs": opts.get("timeout"),
        "approval_mode": opts.get("approval_mode"),
        "sandbox_mode": opts.get("sandbox_mode"),
        "system_prompt": opts.get("system_prompt"),
        "max_turns": opts.get("max_turns"),
    }


# ---------------------------------------------------------------------------- root group


class PromptCommand(click.Command):
    """The hidden ``run`` command, shown to users as ``clinvk [OPTIONS] PROMPT``."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("clinvk", "[OPTIONS] PROMPT")


def hoist_global_options(args: list[str]) -> list[str]:
    """Global options (``--config FILE``) given after the subcommand, moved in front of it.

    The Go CLI's persistent flags are accepted anywhere (``clinvk serve --config FILE``);
    click reads a group's options only before the subcommand. Arguments after ``--`` are
    left alone (a prompt may say anything there).
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--config" and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if arg.startswith("--config="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class RootGroup(click.Group):
    """A group whose unknown first word is a prompt, not a typo'd subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = hoist_global_options(args)
        i = 0
        while i < len(rest):
            if rest[i] == "--config":
                i += 2
            elif rest[i].startswith("--config="):
                i += 1
            else:
                break
        head = rest[i] if i < len(rest) else None
        if head is not None and head not in self.commands and head not in REGISTRY and head not in (
            "--help", "-h", "--version"
        ):
            if not ctx.resilient_parsing and re.fullmatch(r"[a-z][a-z-]{2,}", head):
                names = [n for n, c in self.commands.items() if not c.hidden]
                close = difflib.get_close_matches(head, names, n=1, cutoff=0.8)
                if close:
                    raise click.UsageError(
                        f"no such command {head!r} (did you mean {close[0]!r}?); to send it "
                        f"as a prompt, write: clinvk -- {head}", ctx)
            rest.insert(i, "run")
        return super().parse_args(ctx, rest)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *REGISTRY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        info = REGISTRY.get(cmd_name)
        if info is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        return getattr(importlib.import_module(info.module), info.attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=60)) for name, cmd in self.commands.items()
                if not cmd.hidden]
        rows += [(name, info.summary) for name, info in REGISTRY.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClinvkError as exc:
            raise CliError(exc.message, exit_code_for(exc)) from exc

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run = self.commands["run"]
        with click.Context(run, info_name="clinvk", parent=ctx) as run_ctx:
            records = [r for p in run.get_params(run_ctx)
                       if (r := p.get_help_record(run_ctx)) and "--help" not in r[0]]
        with formatter.section("Prompt options (clinvk [OPTIONS] PROMPT)"):
            formatter.write_dl(records)
        super().format_options(ctx, formatter)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True, subcommand_metavar="PROMPT | COMMAND [ARGS]...")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="CLINVK_CONFIG", help="Config file (default ~/.clinvk/config.yaml).")
@click.version_option(__version__, "--version", prog_name="clinvk")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Run Claude Code, Codex and Gemini CLIs as one tool.

    \b
    clinvk "fix the failing test"          run a prompt (text streamed live)
    clinvk -b codex -o json "list TODOs"   one JSON result
    echo "long prompt" | clinvk -          the prompt from stdin
    clinvk -c "and now the docs"           continue the newest session
    clinvk COMMAND --help                  help for any command below

    Exit codes: 0 ok, 1 failure, 2 usage/config error, the backend's exit code when it
    fails with one, 124 timeout, 130 interrupted.
    """
    ctx.obj = AppContext(config_path)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


# ---------------------------------------------------------------------------- one prompt


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

    def event(self, event: Any) -> None:
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

    def finish(self, result: Any, show_tokens: bool, show_timing: bool) -> None:
        if self.fmt == "json":
            data = result.to_dict()
            if result.dry_run:
                data["command"] = result.command
            from clinvk.cli.render import print_json

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


def exit_for_result(result: Any) -> int:
    from clinvk.core.engine import INTERRUPTED, OK, TIMED_OUT

    if result.status == OK:
        return EXIT_OK
    if result.status == TIMED_OUT:
        return EXIT_TIMEOUT
    if result.status == INTERRUPTED:
        return EXIT_INTERRUPTED
    code = result.exit_code
    if code is None or code == 0:
        return EXIT_FAILURE
    if code < 0:  # killed by a signal: the shell's convention
        return 128 - code
    return code if code < 256 else EXIT_FAILURE


def execute_prompt(app: AppContext, req: Any, fmt: str) -> int:
    """Prepare, run and print one prompt; returns the exit code."""
    # A dry run of a new session leaves no record: it only shows what would run.
    dry_run = req.dry_run or app.config.unified_flags.dry_run
    engine = app.engine(with_store=bool(req.session_id) or not dry_run)
    prepared = engine.prepare(req)
    if prepared.request.dry_run and fmt == "text":
        click.echo(f"Would execute: {prepared.command_line}")
        return EXIT_OK
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
        return EXIT_INTERRUPTED
    result = handle.result
    assert result is not None
    output = app.config.output
    printer.finish(result, output.show_tokens, output.show_timing)
    if not result.ok:
        click.echo(f"clinvk: error: {result.error}", err=True)
    return exit_for_result(result)


@cli.command("run", cls=PromptCommand, hidden=True)
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
@click.pass_context
def run_cmd(ctx: click.Context, prompt: str | None, backend: str | None, model: str | None,
            workdir: str | None, output_format: str | None, ephemeral: bool, dry_run: bool,
            continue_: bool, tags: tuple[str, ...], **opts: Any) -> None:
    """Run PROMPT on a backend (PROMPT `-` reads it from stdin)."""
    from clinvk.core.engine import PromptRequest

    app: AppContext = ctx.obj
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
        from clinvk.core.policy import resolve_workdir

        session = app.store.latest(backend=backend or app.config.default_backend,
                                   working_dir=resolve_workdir(workdir), resumable=True)
        if session is not None:
            note(f"continuing session {session.id[:8]} ({session.backend}) because "
                 "session.auto_resume is on; --ephemeral runs without it")
    req = PromptRequest(
        prompt=prompt, backend=backend, model=model, workdir=workdir,
        session_id=session.id if session else None, ephemeral=ephemeral,
        dry_run=dry_run, tags=list(tags),
        **_run_fields(opts),
    )
    sys.exit(execute_prompt(app, req, fmt))


# ---------------------------------------------------------------------------- resume


@cli.command("resume")
@click.argument("session", required=False, shell_complete=_complete_sessions)
@click.argument("prompt", required=False)
@click.option("--last", is_flag=True, help="Resume the most recently used session.")
@click.option("--here", is_flag=True, help="Only sessions started in the current directory.")
@click.option("-b", "--backend", type=backend_choice, help="Only sessions of this backend.")
@model_option
@output_option
@dry_run_option
@run_options
@click.pass_context
def resume_cmd(ctx: click.Context, session: str | None, prompt: str | None, last: bool,
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
    from clinvk.core.engine import PromptRequest

    app: AppContext = ctx.obj
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
                        **_run_fields(opts))
    sys.exit(execute_prompt(app, req, fmt))


# ---------------------------------------------------------------------------- sessions


@cli.group("sessions")
def sessions_group() -> None:
    """List, show, delete and clean up stored sessions."""


@sessions_group.command("list")
@click.option("-b", "--backend", type=backend_choice, help="Only this backend.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--tag", help="Only sessions with this tag.")
@click.option("--here", is_flag=True, help="Only sessions started in the current directory.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Rows to show (most recently used first).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Rows to skip.")
@json_option
@click.pass_obj
def sessions_list(app: AppContext, backend: str | None, status: str | None, tag: str | None,
                  here: bool, limit: int, offset: int, as_json: bool) -> None:
    """List sessions, most recently used first."""
    from clinvk.cli.render import make_console, print_json, sessions_table

    page = app.store.list(backend=backend, status=status, tag=tag, limit=limit, offset=offset,
                          working_dir=os.path.realpath(os.getcwd()) if here else None)
    if as_json:
        print_json(page.to_dict())
        return
    if not page.sessions:
        click.echo("No sessions found.")
        return
    console = make_console()
    console.print(sessions_table(page.sessions))
    shown = len(page.sessions)
    if page.total > offset + shown or offset:
        console.print(f"\n{offset + 1}-{offset + shown} of {page.total} sessions "
                      "(--limit/--offset for more)", style="dim")


@sessions_group.command("show")
@click.argument("session", shell_complete=_complete_sessions)
@json_option
@click.pass_obj
def sessions_show(app: AppContext, session: str, as_json: bool) -> None:
    """Show every field of one session (ID or unique prefix)."""
    from clinvk.cli.render import make_console, print_json, session_details

    found = app.store.get(session)
    if as_json:
        print_json(found.to_dict())
    else:
        make_console().print(session_details(found))


@sessions_group.command("delete")
@click.argument("sessions", nargs=-1, required=True, shell_complete=_complete_sessions)
@click.option("--force", is_flag=True, help="Delete even while a turn is running.")
@click.pass_obj
def sessions_delete(app: AppContext, sessions: tuple[str, ...], force: bool) -> None:
    """Delete sessions by ID or unique prefix."""
    for ident in sessions:
        deleted = app.store.delete(ident, force=force)
        click.echo(f"Deleted session {deleted.id}")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``; a bare number means days."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r} is not a positive age such as 30d, 12h, 90m, 2w (a bare number is days)",
            param_hint="'--older-than'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@sessions_group.command("clean")
@click.option("--older-than", "older_than",
              help="Age of last use, e.g. 30d, 12h, 2w (default: session.retention_days).")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@json_option
@click.pass_obj
def sessions_clean(app: AppContext, older_than: str | None, dry_run: bool,
                   as_json: bool) -> None:
    """Delete sessions not used for a while (never one with a turn running)."""
    from clinvk.cli.render import make_console, print_json, sessions_table

    if older_than is not None:
        age, label = parse_age(older_than), older_than
    else:
        days = app.config.session.retention_days
        if days == 0:
            note("session.retention_days is 0 (keep forever): nothing cleaned; "
                 "pass --older-than to clean anyway")
            if as_json:
                print_json({"dry_run": dry_run, "older_than_seconds": None, "count": 0,
                            "session_ids": []})
            return
        age, label = days * 86400.0, f"{days}d"
    removed = app.store.cleanup(older_than_seconds=age, dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "older_than_seconds": age, "count": len(removed),
                    "session_ids": [s.id for s in removed]})
        return
    if dry_run and removed:
        make_console().print(sessions_table(removed))
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {len(removed)} session(s) unused for more than {label}.")


# ---------------------------------------------------------------------------- orchestration


def _stdin_text() -> str:
    return click.get_text_stream("stdin").read()


def _progress_stream(as_json: bool) -> tuple[IO[str] | None, bool]:
    """Where live progress goes: stdout (text mode) or a terminal stderr (--json)."""
    if as_json:
        return (sys.stderr, True) if sys.stderr.isatty() else (None, False)
    return sys.stdout, sys.stdout.isatty()


def run_job(labels: list[tuple[str, str]], title: str, as_json: bool,
            job: Callable[[Callable[..., None]], Any]) -> Any:
    """Run an orchestration with live progress; exits 130 when interrupted."""
    from clinvk.cli.render import ProgressView

    stream, live = _progress_stream(as_json)
    stopping = threading.Event()
    view = ProgressView(labels, stream, live=live, title=title)

    def on_update(index: int, state: str, outcome: Any) -> None:
        if state == "running" and stopping.is_set():
            raise KeyboardInterrupt  # interrupted: start nothing new
        view.update(index, state, outcome)

    def cancel() -> None:
        stopping.set()
        cancel_all_runs()

    with view:
        report, interrupted = run_interruptible(lambda: job(on_update), cancel)
    if interrupted:
        note("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    return report


def job_exit(report: Any, noun: str) -> int:
    """0 when every task succeeded; else 1 with one line on stderr."""
    total = len(report.outcomes)
    if report.completed == total:
        return EXIT_OK
    click.echo(f"clinvk: error: {total - report.completed} of {total} {noun}(s) did not "
               "succeed", err=True)
    return EXIT_FAILURE


def _outcome_dict(outcome: Any, key: str, value: int) -> dict[str, Any]:
    return {key: value, **outcome.to_dict()}


def _task_labels(app: AppContext, requests: list[Any], names: list[str | None]
                 ) -> list[tuple[str, str]]:
    from clinvk.cli.render import one_line

    default = app.config.default_backend
    return [(req.backend or default, name or one_line(req.prompt, 60))
            for req, name in zip(requests, names, strict=True)]


def _with_run_defaults(req: Any, timeout: float | None, dry_run: bool) -> Any:
    return replace(req, timeout_secs=req.timeout_secs or timeout,
                   dry_run=req.dry_run or dry_run)


def _print_report(app: AppContext, report: Any, labels: list[tuple[str, str]],
                  heading: str, noun: str) -> None:
    from clinvk.cli.render import make_console, print_outputs, summary_line

    console = make_console()
    console.print()
    print_outputs(console, report, labels, heading=heading)
    console.print(summary_line(report, noun), style="bold")


@cli.command("parallel")
@click.option("-f", "--file", "path", required=True,
              help="Task file (.json, .yaml) or - for stdin.")
@click.option("--max-parallel", type=click.IntRange(min=1),
              help="Tasks at once (default: the file's max_parallel, else parallel.max_workers).")
@click.option("--fail-fast/--no-fail-fast", default=None,
              help="Cancel the other tasks on the first failure.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Timeout per task in seconds (a task's timeout_secs wins).")
@dry_run_option
@json_option
@click.pass_obj
def parallel_cmd(app: AppContext, path: str, max_parallel: int | None, fail_fast: bool | None,
                 timeout: float | None, dry_run: bool, as_json: bool) -> None:
    """Run the tasks of a file concurrently (always ephemeral).

    \b
    {"tasks": [{"backend": "claude", "prompt": "review auth.py"},
               {"backend": "codex", "prompt": "add logging", "workdir": "api"}],
     "max_parallel": 2, "fail_fast": false}
    """
    from clinvk.cli.taskfiles import load_parallel_file
    from clinvk.core.orchestrate import run_parallel

    spec = load_parallel_file(path, _stdin_text)
    requests = [_with_run_defaults(t.request, timeout, dry_run) for t in spec.tasks]
    labels = _task_labels(app, requests, [t.name for t in spec.tasks])
    engine = app.engine(with_store=False)
    workers = max_parallel or spec.max_parallel or app.config.parallel.max_workers
    fail_fast = spec.fail_fast if fail_fast is None else fail_fast
    if fail_fast is None:
        fail_fast = app.config.parallel.fail_fast
    title = f"Running {len(requests)} task(s), {workers} at a time" + \
        (", fail-fast" if fail_fast else "")
    report = run_job(labels, title, as_json, lambda on_update: run_parallel(
        engine, requests, max_parallel=workers, fail_fast=fail_fast, on_update=on_update))
    for outcome, task in zip(report.outcomes, spec.tasks, strict=True):
        outcome.name = task.name
    if as_json:
        from clinvk.cli.render import print_json

        print_json({
            "total_tasks": len(report.outcomes), "completed": report.completed,
            "failed": report.failed, "cancelled": report.cancelled,
            "total_duration_ms": report.total_duration_ms,
            "results": [_outcome_dict(o, "index", o.index) for o in report.outcomes],
        })
    else:
        _print_report(app, report, labels, "task", "task")
    sys.exit(job_exit(report, "task"))


@cli.command("chain")
@click.option("-f", "--file", "path", required=True,
              help="Step file (.json, .yaml) or - for stdin.")
@click.option("--stop-on-failure/--continue-on-failure", default=None,
              help="Stop at the first failed step (default: the file's stop_on_failure, "
                   "else continue).")
@click.option("--pass-working-dir/--no-pass-working-dir", default=None,
              help="A step without workdir runs where the previous step ran.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Timeout per step in seconds (a step's timeout_secs wins).")
@dry_run_option
@json_option
@click.pass_obj
def chain_cmd(app: AppContext, path: str, stop_on_failure: bool | None,
              pass_working_dir: bool | None, timeout: float | None, dry_run: bool,
              as_json: bool) -> None:
    """Run the steps of a file in order; {{previous}} is the previous step's output.

    \b
    {"steps": [{"name": "analyze", "backend": "claude", "prompt": "list the bugs"},
               {"name": "fix", "backend": "codex", "prompt": "fix these: {{previous}}"}],
     "stop_on_failure": true}
    """
    from clinvk.cli.taskfiles import load_chain_file
    from clinvk.core.orchestrate import run_chain

    spec = load_chain_file(path, _stdin_text)
    steps = [replace(s, request=_with_run_defaults(s.request, timeout, dry_run))
             for s in spec.steps]
    labels = _task_labels(app, [s.request for s in steps], [s.name for s in steps])
    stop = stop_on_failure if stop_on_failure is not None else bool(spec.stop_on_failure)
    pass_dir = pass_working_dir if pass_working_dir is not None else \
        bool(spec.pass_working_dir)
    engine = app.engine(with_store=False)
    title = f"Chain of {len(steps)} step(s)" + (", stop on failure" if stop else "")
    report = run_job(labels, title, as_json, lambda on_update: run_chain(
        engine, steps, stop_on_failure=stop, pass_working_dir=pass_dir, on_update=on_update))
    failed = [o.index + 1 for o in report.outcomes if o.status not in ("ok", "skipped")]
    if as_json:
        from clinvk.cli.render import print_json

        data: dict[str, Any] = {"total_steps": len(steps), "completed_steps": report.completed}
        if failed:
            data["failed_step"] = failed[0]
        data["total_duration_ms"] = report.total_duration_ms
        data["results"] = [_outcome_dict(o, "step", o.index + 1) for o in report.outcomes]
        print_json(data)
    else:
        _print_report(app, report, labels, "step", "step")
    sys.exit(job_exit(report, "step"))


def _compare_backends(app: AppContext, given: tuple[str, ...], all_backends: bool,
                      dry_run: bool) -> list[str]:
    if given and all_backends:
        raise click.UsageError("use either -b/--backends or --all-backends, not both")
    if all_backends:
        registry = app.engine(with_store=False).registry
        names = []
        for backend in registry:
            if dry_run or backend.available:
                names.append(backend.name)
            else:
                note(f"skipping {backend.name}: not installed")
        if not names:
            raise ClinvkError("no backend is installed; see: clinvk version")
        return names
    names = [n.strip().lower() for item in given for n in item.split(",") if n.strip()]
    if not names:
        raise click.UsageError("name the backends to compare (-b claude,codex) or use "
                               "--all-backends")
    for name in names:
        if name not in KNOWN_BACKENDS:
            raise click.BadParameter(f"unknown backend {name!r} (known: "
                                     f"{', '.join(KNOWN_BACKENDS)})",
                                     param_hint="'-b/--backends'")
    return list(dict.fromkeys(names))


@cli.command("compare")
@click.argument("prompt", required=False)
@click.option("-b", "--backends", "backends", multiple=True,
              help="Comma-separated backends, e.g. claude,codex (repeatable).")
@click.option("--all-backends", is_flag=True, help="Every installed backend.")
@click.option("--sequential", is_flag=True, help="One backend after the other.")
@click.option("-w", "--workdir", type=click.Path(file_okay=False),
              help="Directory the agents work in (default: the current one).")
@run_options
@dry_run_option
@json_option
@click.pass_obj
def compare_cmd(app: AppContext, prompt: str | None, backends: tuple[str, ...],
                all_backends: bool, sequential: bool, workdir: str | None, dry_run: bool,
                as_json: bool, **opts: Any) -> None:
    """Send the same PROMPT to several backends and compare (always ephemeral)."""
    from clinvk.core.engine import PromptRequest
    from clinvk.core.orchestrate import run_compare

    prompt = read_prompt(prompt)
    names = _compare_backends(app, backends, all_backends, dry_run)
    base = PromptRequest(prompt=prompt, workdir=absolute_dir(workdir),
                         dry_run=dry_run,
                         **_run_fields(opts))
    engine = app.engine(with_store=False)
    labels = [(name, "") for name in names]
    title = f"Comparing {len(names)} backend(s)" + (", one at a time" if sequential else "")
    report = run_job(labels, title, as_json, lambda on_update: run_compare(
        engine, base, names, sequential=sequential, on_update=on_update))
    if as_json:
        from clinvk.cli.render import print_json

        print_json({"prompt": prompt, "backends": names,
                    "results": [o.to_dict() for o in report.outcomes],
                    "total_duration_ms": report.total_duration_ms})
    else:
        from clinvk.cli.render import compare_table, make_console, print_outputs, seconds

        console = make_console()
        console.print()
        print_outputs(console, report, labels, heading=None)
        console.print(compare_table(report))
        console.print(f"\nTotal time: {seconds(report.total_duration_ms)}", style="bold")
    sys.exit(job_exit(report, "backend"))


# ---------------------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Show and change the configuration."""


def _show_value(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False)


@config_group.command("show")
@click.argument("prefix", required=False, shell_complete=_complete_config_keys)
@json_option
@click.pass_obj
def config_show(app: AppContext, prefix: str | None, as_json: bool) -> None:
    """Effective values, where each came from (secrets masked). PREFIX filters keys."""
    from rich.markup import escape
    from rich.table import Table

    from clinvk.cli.render import make_console, print_json

    config = app.config
    rows = [(k, v, s) for k, v, s in config.describe(mask_secrets=True)
            if not prefix or k == prefix or k.startswith(prefix.rstrip(".") + ".")]
    if prefix and not rows:
        raise InvalidRequest(f"no configuration key matches {prefix!r}")
    if as_json:
        print_json({"file": str(config.path) if config.path else None,
                    "values": [{"key": k, "value": v, "source": s} for k, v, s in rows]})
        return
    console = make_console()
    console.print(f"config file: {config.path or '(none: built-in defaults)'}", style="dim")
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("KEY", no_wrap=True)
    table.add_column("VALUE", overflow="fold")
    table.add_column("SOURCE", no_wrap=True)
    for key, value, source in rows:
        where = "file" if source.startswith("file:") else source.replace("env:", "env ")
        table.add_row(key, escape(_show_value(value)), where)
    console.print(table)


@config_group.command("set")
@click.argument("key", shell_complete=_complete_config_keys)
@click.argument("value")
@click.pass_obj
def config_set(app: AppContext, key: str, value: str) -> None:
    """Set KEY to VALUE in the config file (validated; comments kept where possible)."""
    from clinvk.core.config import resolve_config_path, set_config_value

    path, _ = resolve_config_path(app.config_path)
    set_config_value(path, key, value)
    click.echo(f"Set {key} = {value} in {path}")


@config_group.command("path")
@click.pass_obj
def config_path_cmd(app: AppContext) -> None:
    """Print the config file in use (it may not exist yet)."""
    from clinvk.core.config import resolve_config_path

    click.echo(str(resolve_config_path(app.config_path)[0]))


# ---------------------------------------------------------------------------- misc


@cli.command("version")
@json_option
@click.pass_obj
def version_cmd(app: AppContext, as_json: bool) -> None:
    """Show the clinvk version and each backend's version."""
    from clinvk.core.backends import Registry

    if not as_json:
        click.echo(f"clinvk {__version__}")
    rows = []
    for backend in Registry.from_config(app.config):
        path = backend.executable_path()
        rows.append({"name": backend.name, "available": path is not None,
                     "version": backend.version() if path else None, "path": path})
    if as_json:
        from clinvk.cli.render import print_json

        print_json({"clinvk": __version__, "backends": rows})
        return
    for row in rows:
        if row["available"]:
            click.echo(f"{row['name']:8} {row['version'] or 'unknown version':32} {row['path']}")
        else:
            click.echo(f"{row['name']:8} not installed")


@cli.command("completion")
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    eval "$(clinvk completion bash)"      # in ~/.bashrc
    eval "$(clinvk completion zsh)"       # in ~/.zshrc
    clinvk completion fish > ~/.config/fish/completions/clinvk.fish
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None
    click.echo(complete(cli, {}, "clinvk", "_CLINVK_COMPLETE").source())


@cli.command("serve")
@click.option("--config", "config_path", metavar="FILE", expose_value=False,
              help="Config file (default ~/.clinvk/config.yaml or $CLINVK_CONFIG); may also "
                   "follow the command, as with every global option.")
@click.option("--host", help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("-p", "--port", type=click.IntRange(0, 65535),
              help="TCP port (default: server.port, 8080; 0 = any free port).")
@click.option("--workers", type=click.IntRange(min=1),
              help="gunicorn worker processes (default: server.workers).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per worker (default: server.threads).")
@click.pass_obj
def serve_cmd(app: AppContext, host: str | None, port: int | None, workers: int | None,
              threads: int | None) -> None:
    """Run the HTTP server (gunicorn, gthread) until Ctrl-C or SIGTERM.

    Flags override server.* from the config file (--config) and the environment.
    """
    overrides = {key: value for key, value in (
        ("server.host", host), ("server.port", port),
        ("server.workers", workers), ("server.threads", threads)) if value is not None}
    try:
        config = app.config
        if overrides:
            config = config.with_overrides(overrides, source="flag")
        from clinvk.server.runtime.serve import run_server

        srv = config.server
        run_server(config, srv.host, srv.port, srv.workers, srv.threads)
    except ClinvkError as exc:
        click.echo(f"clinvk: error: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))


def usage_error_line(exc: click.UsageError) -> str:
    """One line: what is wrong, and where the help is (never the hidden ``run`` command)."""
    ctx = exc.ctx
    where = "clinvk"
    if ctx is not None and ctx.command is not cli and ctx.command.name != "run":
        where = ctx.command_path
    return f"clinvk: error: {exc.format_message()} (see '{where} --help')"


def main(argv: list[str] | None = None) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        rv = cli.main(args=argv, prog_name="clinvk", standalone_mode=False)
    except click.Abort:  # Ctrl-C outside a run, e.g. while reading the prompt from stdin
        stop_leftover_runs()
        note("interrupted")
        code = EXIT_INTERRUPTED
    except click.UsageError as exc:
        click.echo(usage_error_line(exc), err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    else:
        code = rv if isinstance(rv, int) else EXIT_OK
    sys.exit(code)


if __name__ == "__main__":
    main()
