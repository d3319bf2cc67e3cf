"""The root ``clinvk`` group: a first word that names no command is the prompt.

``clinvk [OPTIONS] PROMPT`` runs a prompt (the hidden ``run`` command); every other first
word names a command of :data:`clinvk.cli.commands.REGISTRY`, imported only when used.
Global options (``--config FILE``) may also follow the command, as the Go CLI's persistent
flags do.
"""

from __future__ import annotations

import difflib
import importlib
import re
import signal
import sys
import threading

import click

from clinvk import __version__
from clinvk.cli.commands import REGISTRY
from clinvk.cli.context import AppContext
from clinvk.cli.interrupts import raise_interrupt, stop_leftover_runs
from clinvk.cli.output import CliError, ExitCode, exit_code_for, note
from clinvk.core.errors import ClinvkError

_HELP_WORDS = ("--help", "-h", "--version")
#: What looks like a mistyped command rather than a one-word prompt.
_COMMAND_LIKE = re.compile(r"[a-z][a-z-]{2,}")


def hoist_global_options(args: list[str]) -> list[str]:
    """Global options (``--config FILE``) given after the subcommand, moved in front of it.

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


def _first_word(args: list[str]) -> int:
    """Index of the first argument after the (hoisted) global options."""
    i = 0
    while i < len(args):
        if args[i] == "--config":
            i += 2
        elif args[i].startswith("--config="):
            i += 1
        else:
            break
    return i


class RootGroup(click.Group):
    """A group of lazily imported commands whose unknown first word is a prompt."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = hoist_global_options(args)
        i = _first_word(rest)
        head = rest[i] if i < len(rest) else None
        if head is not None and head not in REGISTRY and head not in _HELP_WORDS:
            if not ctx.resilient_parsing and _COMMAND_LIKE.fullmatch(head):
                visible = [name for name, info in REGISTRY.items() if not info.hidden]
                close = difflib.get_close_matches(head, visible, n=1, cutoff=0.8)
                if close:
                    raise click.UsageError(
                        f"no such command {head!r} (did you mean {close[0]!r}?); to send it "
                        f"as a prompt, write: clinvk -- {head}", ctx)
            rest.insert(i, "run")
        return super().parse_args(ctx, rest)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(REGISTRY)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        info = REGISTRY.get(cmd_name)
        if info is None:
            return None
        command: click.Command = getattr(importlib.import_module(info.module), info.attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = sorted((name, info.summary) for name, info in REGISTRY.items() if not info.hidden)
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run = self.get_command(ctx, "run")
        assert run is not None
        with click.Context(run, info_name="clinvk", parent=ctx) as run_ctx:
            records = [r for p in run.get_params(run_ctx)
                       if (r := p.get_help_record(run_ctx)) and "--help" not in r[0]]
        with formatter.section("Prompt options (clinvk [OPTIONS] PROMPT)"):
            formatter.write_dl(records)
        super().format_options(ctx, formatter)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ClinvkError as exc:
            raise CliError(exc.message, exit_code_for(exc)) from exc


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


def usage_error_line(exc: click.UsageError) -> str:
    """One line: what is wrong, and where the help is (never the hidden ``run`` command)."""
    ctx = exc.ctx
    where = "clinvk"
    if ctx is not None and ctx.command is not cli and ctx.command.name != "run":
        where = ctx.command_path
    return f"clinvk: error: {exc.format_message()} (see '{where} --help')"


def main(argv: list[str] | None = None) -> None:
    """The ``clinvk`` console script: run the command line, exit with its code."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        rv = cli.main(args=argv, prog_name="clinvk", standalone_mode=False)
    except click.Abort:  # Ctrl-C outside a run, e.g. while reading the prompt from stdin
        stop_leftover_runs()
        note("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except click.UsageError as exc:
        click.echo(usage_error_line(exc), err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    else:
        code = rv if isinstance(rv, int) else int(ExitCode.OK)
    sys.exit(code)
