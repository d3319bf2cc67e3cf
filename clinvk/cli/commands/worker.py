"""``clinvk worker``: run this machine as an agent host of a Celery deployment."""

from __future__ import annotations

import sys

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.output import exit_code_for
from clinvk.core.errors import ClinvkError


@click.command("worker")
@click.option("--config", "config_path", metavar="FILE", expose_value=False,
              help="Config file (default ~/.clinvk/config.yaml or $CLINVK_CONFIG).")
@click.option("--broker-url", metavar="URL",
              help="Redis URL of the broker (default: execution.broker_url).")
@click.option("-n", "--name", "host", metavar="NAME",
              help="This host's name: its queue and its sessions' affinity "
                   "(default: execution.host, else the machine's host name).")
@click.option("--backends", metavar="LIST",
              help="Comma-separated backends this host serves (default: execution.backends, "
                   "else every installed one).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256),
              help="CLI runs at once on this host (default: execution.concurrency).")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Celery's log level.")
@pass_app
def worker_cmd(app: AppContext, broker_url: str | None, host: str | None,
               backends: str | None, concurrency: int | None, loglevel: str) -> None:
    """Take runs from the Redis broker and run their CLIs here (execution.mode celery).

    \b
    clinvk worker --broker-url redis://redis:6379/0 --name agent-1 --backends claude,codex

    Gateways (clinvk serve with execution.mode: celery) place new runs on a backend's queue
    and resumes on the queue of the host that holds the session; see docs/deployment.md.
    SIGTERM stops taking work and lets running CLIs finish.
    """
    overrides = {key: value for key, value in (
        ("execution.broker_url", broker_url), ("execution.host", host),
        ("execution.backends", backends), ("execution.concurrency", concurrency))
        if value is not None}
    try:
        config = app.config.with_overrides(overrides, source="flag") if overrides else app.config
        if not config.execution.broker_url:
            raise click.UsageError("no broker: pass --broker-url or set execution.broker_url")
        from clinvk.core.remote.worker import serve_worker  # celery only for this command

        serve_worker(config, concurrency=config.execution.concurrency, loglevel=loglevel)
    except ClinvkError as exc:
        click.echo(f"clinvk: error: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))
