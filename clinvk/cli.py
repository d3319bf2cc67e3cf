"""The `clinvk` command line: a thin click layer over the engine.

`clinvk [OPTIONS] PROMPT` runs a prompt; every other first word names a subcommand.
Exit codes: 0 ok, 1 failure, 2 usage or configuration error, the backend's own exit code
when it fails with one, 124 timeout, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from clinvk import __version__
from clinvk.errors import ClinvkError, ConfigError, InvalidRequest, NotFound

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

OUTPUT_FORMATS = ("text", "json", "stream-json")


class AppContext:
    """Lazily built config, store and engine for one command invocation."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config = None
        self._store = None
        self._engine = None

    @property
    def config(self):
        if self._config is None:
            from clinvk.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self):
        if self._store is None:
            from clinvk.config import clinvk_home
            from clinvk.sessions import SessionStore, default_store_path

            self._store = SessionStore(default_store_path(clinvk_home()))
        return self._store

    @property
    def engine(self):
        if self._engine is None:
            from clinvk.engine import Engine

            self._engine = Engine(self.config, self.store)
        return self._engine


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    """One clear line on stderr, then exit."""
    click.echo(f"clinvk: error: {message}", err=True)
    sys.exit(code)


def exit_code_for(error: ClinvkError) -> int:
    if isinstance(error, ConfigError | InvalidRequest):
        return EXIT_USAGE
    return EXIT_FAILURE


class RootGroup(click.Group):
    """A group whose unknown first word is a prompt, not a typo'd subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = list(args)
        i = 0
        while i < len(rest) and rest[i] in ("--config",):
            i += 2
        while i < len(rest) and rest[i].startswith("--config="):
            i += 1
        head = rest[i] if i < len(rest) else None
        if head is not None and head not in self.commands and head not in (
            "--help", "-h", "--version"
        ):
            rest.insert(i, "run")
        return super().parse_args(ctx, rest)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="CLINVK_CONFIG", help="Config file (default ~/.clinvk/config.yaml).")
@click.version_option(__version__, "--version", prog_name="clinvk")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Run Claude Code, Codex and Gemini CLIs as one tool.

    \b
    clinvk [OPTIONS] PROMPT       run a prompt (see `clinvk run --help`)
    clinvk COMMAND [ARGS]...      anything below
    """
    ctx.obj = AppContext(config_path)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("run")
@click.argument("prompt", required=False)
@click.option("-b", "--backend", help="claude, codex or gemini (default: config default_backend).")
@click.option("-m", "--model", help="Model name or alias (fast, balanced, best).")
@click.option("-w", "--workdir", type=click.Path(file_okay=False), help="Working directory.")
@click.option("-o", "--output-format", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="text (default), json or stream-json.")
@click.option("--ephemeral", is_flag=True, help="Do not keep a session.")
@click.option("--dry-run", is_flag=True, help="Print the exact command instead of running it.")
@click.option("-c", "--continue", "continue_", is_flag=True,
              help="Continue the most recent session.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Kill the backend after this many seconds (exit 124).")
@click.option("--approval-mode", type=click.Choice(("default", "auto", "none", "always")))
@click.option("--sandbox-mode", type=click.Choice(("default", "read-only", "workspace", "full")))
@click.option("--system-prompt", help="Extra system instructions.")
@click.option("--max-turns", type=click.IntRange(min=0), help="Cap agent turns (claude).")
@click.pass_obj
def run_cmd(app: AppContext, prompt: str | None, backend: str | None, model: str | None,
            workdir: str | None, output_format: str | None, ephemeral: bool, dry_run: bool,
            continue_: bool, timeout: float | None, approval_mode: str | None,
            sandbox_mode: str | None, system_prompt: str | None,
            max_turns: int | None) -> None:
    """Run PROMPT on a backend (PROMPT `-` reads it from stdin)."""
    from clinvk.engine import PromptRequest
    from clinvk.policy import resolve_workdir

    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise click.UsageError("missing PROMPT (use - to read it from stdin)")
        prompt = sys.stdin.read()
    try:
        fmt = output_format or app.config.output.format
        session_id = None
        if continue_:
            latest = app.store.latest(backend=backend)
            if latest is None:
                raise NotFound("no session to continue; start one without -c")
            session_id = latest.id
        req = PromptRequest(
            prompt=prompt, backend=backend, model=model,
            workdir=resolve_workdir(workdir) if workdir else None,
            session_id=session_id, ephemeral=ephemeral, approval_mode=approval_mode,
            sandbox_mode=sandbox_mode, max_turns=max_turns, system_prompt=system_prompt,
            dry_run=dry_run or app.config.unified_flags.dry_run, timeout_secs=timeout,
        )
        prepared = app.engine.prepare(req)
        sys.exit(run_prepared(app, prepared, fmt))
    except ClinvkError as exc:
        fail(exc.message, exit_code_for(exc))


def run_prepared(app: AppContext, prepared: Any, fmt: str) -> int:
    """Run and print in ``fmt``; returns the exit code."""
    from clinvk.engine import INTERRUPTED, OK, TIMED_OUT

    if prepared.request.dry_run and fmt == "text":
        click.echo(prepared.command_line)
        app.engine.execute(prepared)  # records the dry-run session
        return EXIT_OK
    out = click.get_text_stream("stdout")
    printed_text = False

    def on_event(event) -> None:
        nonlocal printed_text
        if fmt == "stream-json":
            out.write(event.to_json() + "\n")
            out.flush()
        elif fmt == "text" and event.type == "message":
            out.write(event.content.get("text", ""))
            out.flush()
            printed_text = True

    handle = app.engine.start(prepared)
    try:
        for event in handle.events():
            if event is not None:
                on_event(event)
    except KeyboardInterrupt:
        handle.close()
        click.echo("\nclinvk: interrupted", err=True)
        return EXIT_INTERRUPTED
    finally:
        handle.close()
    result = handle.result
    assert result is not None
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif fmt == "text":
        if not printed_text and result.output:
            out.write(result.output)
        if printed_text or result.output:
            out.write("\n")
        out.flush()
    if result.status == OK:
        return EXIT_OK
    if result.status == TIMED_OUT:
        click.echo(f"clinvk: error: {result.error}", err=True)
        return EXIT_TIMEOUT
    if result.status == INTERRUPTED:
        return EXIT_INTERRUPTED
    click.echo(f"clinvk: error: {result.error}", err=True)
    return result.exit_code if result.exit_code not in (None, 0) else EXIT_FAILURE


@cli.command("version")
@click.pass_obj
def version_cmd(app: AppContext) -> None:
    """Show the clinvk version and each backend's version."""
    click.echo(f"clinvk {__version__}")
    try:
        registry = app.engine.registry
    except ClinvkError as exc:
        fail(exc.message, exit_code_for(exc))
    for backend in registry:
        version = backend.version() if backend.available else None
        click.echo(f"{backend.name:8} {version or 'not installed'}")


@cli.command("serve")
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
        from clinvk.server.serve import run_server

        srv = config.server
        run_server(config, srv.host, srv.port, srv.workers, srv.threads)
    except ClinvkError as exc:
        click.echo(f"clinvk: error: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))


def main() -> None:
    cli(prog_name="clinvk")


if __name__ == "__main__":
    main()
