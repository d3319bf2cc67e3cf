"""``clinvk version`` and ``clinvk completion``: about the installation itself."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from clinvk import __version__
from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.options import json_option
from clinvk.cli.output import print_json
from clinvk.core.backends import Registry


@click.command("version")
@json_option
@pass_app
def version_cmd(app: AppContext, as_json: bool) -> None:
    """Show the clinvk version and each backend's version."""
    if not as_json:
        click.echo(f"clinvk {__version__}")
    rows = []
    for backend in Registry.from_config(app.config):
        path = backend.executable_path()
        rows.append({"name": backend.name, "available": path is not None,
                     "version": backend.version() if path else None, "path": path})
    if as_json:

        print_json({"clinvk": __version__, "backends": rows})
        return
    for row in rows:
        if row["available"]:
            click.echo(f"{row['name']:8} {row['version'] or 'unknown version':32} {row['path']}")
        else:
            click.echo(f"{row['name']:8} not installed")


@click.command("completion")
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    eval "$(clinvk completion bash)"      # in ~/.bashrc
    eval "$(clinvk completion zsh)"       # in ~/.zshrc
    clinvk completion fish > ~/.config/fish/completions/clinvk.fish
    """
    complete = get_completion_class(shell)
    assert complete is not None
    click.echo(complete(ctx.find_root().command, {}, "clinvk", "_CLINVK_COMPLETE").source())
