"""``clinvk serve``: the HTTP server; the one CLI module that imports :mod:`clinvk.server`."""

from __future__ import annotations

import sys

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.output import exit_code_for
from clinvk.core.errors import ClinvkError
from clinvk.server.runtime.serve import run_server


@click.command("serve")
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
@pass_app
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

        srv = config.server
        run_server(config, srv.host, srv.port, srv.workers, srv.threads)
    except ClinvkError as exc:
        click.echo(f"clinvk: error: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))
