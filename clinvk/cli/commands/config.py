"""``clinvk config``: show the effective configuration, set a key, print the file in use."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.options import complete_config_keys, json_option
from clinvk.cli.output import print_json
from clinvk.cli.render import make_console
from clinvk.core.config import resolve_config_path, set_config_value
from clinvk.core.errors import InvalidRequest


@click.group("config")
def config_group() -> None:
    """Show and change the configuration."""

def _show_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False)


@config_group.command("show")
@click.argument("prefix", required=False, shell_complete=complete_config_keys)
@json_option
@pass_app
def config_show(app: AppContext, prefix: str | None, as_json: bool) -> None:
    """Effective values, where each came from (secrets masked). PREFIX filters keys."""
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
@click.argument("key", shell_complete=complete_config_keys)
@click.argument("value")
@pass_app
def config_set(app: AppContext, key: str, value: str) -> None:
    """Set KEY to VALUE in the config file (validated; comments kept where possible)."""
    path, _ = resolve_config_path(app.config_path)
    set_config_value(path, key, value)
    click.echo(f"Set {key} = {value} in {path}")


@config_group.command("path")
@pass_app
def config_path_cmd(app: AppContext) -> None:
    """Print the config file in use (it may not exist yet)."""
    click.echo(str(resolve_config_path(app.config_path)[0]))
