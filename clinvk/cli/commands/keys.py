"""``clinvk keys``: what an operator needs to refer to an API key without writing it down."""

from __future__ import annotations

import os
import sys

import click

from clinvk.core.keys import key_id


@click.group("keys")
def keys_group() -> None:
    """API key ids (for server.admin_key_ids; never the keys themselves)."""

@keys_group.command("id")
@click.option("--key-env", metavar="NAME",
              help="Read the key from this environment variable instead of stdin.")
def keys_id(key_env: str | None) -> None:
    """Print the id of the API key read from stdin (one key per line, one id per line).

    \b
    echo "$MY_KEY" | clinvk keys id
    clinvk keys id --key-env CLINVK_ADMIN_KEY

    The key is never echoed or written anywhere; a command-line argument would end up in
    the shell history, so there is none.
    """
    if key_env:
        value = os.environ.get(key_env, "").strip()
        if not value:
            raise click.UsageError(f"environment variable {key_env} is empty or not set")
        keys = [value]
    else:
        if sys.stdin.isatty():
            click.echo("Paste the key(s), one per line, then Ctrl-D:", err=True)
        keys = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
        if not keys:
            raise click.UsageError("no key on stdin")
    for key in keys:
        click.echo(key_id(key))
