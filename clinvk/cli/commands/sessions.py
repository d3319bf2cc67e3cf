"""``clinvk sessions``: list, show, delete and clean up the stored sessions."""

from __future__ import annotations

import os
import re

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.options import backend_choice, complete_sessions, json_option
from clinvk.cli.output import note, print_json
from clinvk.cli.render import make_console, session_details, sessions_table
from clinvk.core.store import STATUSES


@click.group("sessions")
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
@pass_app
def sessions_list(app: AppContext, backend: str | None, status: str | None, tag: str | None,
                  here: bool, limit: int, offset: int, as_json: bool) -> None:
    """List sessions, most recently used first."""
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
@click.argument("session", shell_complete=complete_sessions)
@json_option
@pass_app
def sessions_show(app: AppContext, session: str, as_json: bool) -> None:
    """Show every field of one session (ID or unique prefix)."""
    found = app.store.get(session)
    if as_json:
        print_json(found.to_dict())
    else:
        make_console().print(session_details(found))


@sessions_group.command("delete")
@click.argument("sessions", nargs=-1, required=True, shell_complete=complete_sessions)
@click.option("--force", is_flag=True, help="Delete even while a turn is running.")
@pass_app
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
@pass_app
def sessions_clean(app: AppContext, older_than: str | None, dry_run: bool,
                   as_json: bool) -> None:
    """Delete sessions not used for a while (never one with a turn running)."""
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
