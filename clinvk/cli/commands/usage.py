"""``clinvk usage``: runs, tokens and cost from the usage ledger (docs/usage.md).

By default it reads the ledger of the local store, which sees every key; with ``--url`` it
asks a running server's ``GET /api/v1/usage`` instead, as the key in ``CLINVK_API_KEY``
(never an argument: it would end up in the shell history), which sees its own rows or, for
an admin key, all. Both take the same question and refuse the same mistakes, because both
validate it with :func:`clinvk.core.usage.parse_query`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click
from rich.table import Table

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.options import json_option
from clinvk.cli.render import make_console, print_json, seconds
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.usage import UsageLedger, parse_query
from clinvk.core.usage.rows import GROUPS, MAX_RECENT

_TIME_HELP = "a date (2026-12-07), an RFC 3339 time or an age such as 24h or 7d"
_COUNTS = (("runs", "RUNS"), ("failed_runs", "FAILED"), ("input_tokens", "IN"),
           ("output_tokens", "OUT"), ("cached_tokens", "CACHED"))


def _local_report(app: AppContext, since: str | None, until: str | None, group_by: str | None,
                  recent: int, key_id: str | None) -> dict[str, Any]:
    # Locally every row is readable; --key narrows to one key id the way the server
    # narrows a caller to its own.
    who = Principal(key_id) if key_id else LOCAL
    query = parse_query(since=since, until=until, group_by=group_by, recent=recent,
                        visible_to=who)
    ledger = UsageLedger(app.store.usage,
                         retention_days=app.config.session.usage_retention_days)
    return {"group_by": list(query.group_by), "groups": ledger.summary(query),
            "recent": [row.to_dict() for row in ledger.recent(query)],
            "key_id": key_id, "sees_all": key_id is None}


def _remote_report(url: str, since: str | None, until: str | None, group_by: str | None,
                   recent: int) -> dict[str, Any]:
    parse_query(since=since, until=until, group_by=group_by, recent=recent)  # fail early
    params = {"since": since, "until": until, "group_by": group_by, "recent": recent}
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    headers = {"Accept": "application/json"}
    key = os.environ.get("CLINVK_API_KEY", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    target = f"{url.rstrip('/')}/api/v1/usage?{query}"
    try:
        with urllib.request.urlopen(urllib.request.Request(target, headers=headers),
                                    timeout=30) as resp:
            payload = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        message = body.get("message") or body.get("error") if isinstance(body, dict) else None
        raise click.ClickException(f"{url}: {exc.code} {message or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"cannot reach {url}: {reason}") from None
    if isinstance(payload, dict) and "success" in payload and "data" in payload:
        payload = payload["data"]  # the server's response envelope
    return payload


def _groups_table(report: dict[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in report["group_by"]:
        table.add_column(name.upper(), no_wrap=True)
    for _, title in _COUNTS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("COST USD", justify="right", no_wrap=True)
    table.add_column("TIME", justify="right", no_wrap=True)
    for group in report["groups"]:
        cost = group.get("cost_usd")
        table.add_row(*[str(group.get(name) if group.get(name) is not None else "-")
                        for name in report["group_by"]],
                      *[str(group[name]) for name, _ in _COUNTS],
                      "-" if cost is None else f"{cost:.4f}", seconds(group["duration_ms"]))
    return table


def _recent_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", title="recent runs",
                  title_justify="left")
    for title in ("AT", "KEY", "BACKEND", "MODEL", "ORIGIN", "STATUS", "TOKENS", "COST USD"):
        table.add_column(title, no_wrap=True,
                         justify="right" if title in ("TOKENS", "COST USD") else "left")
    for row in rows:
        cost = row.get("cost_usd")
        table.add_row(row["at"], row.get("key_id") or "-", row["backend"],
                      row.get("model") or "-", row["origin"], row["status"],
                      str(row["input_tokens"] + row["output_tokens"]),
                      "-" if cost is None else f"{cost:.4f}")
    return table


@click.command("usage")
@click.option("--since", help=f"Runs that ended at or after this: {_TIME_HELP}.")
@click.option("--until", help=f"Runs that ended before this: {_TIME_HELP}.")
@click.option("-g", "--group-by", "group_by", metavar="NAMES",
              help="Comma-separated: " + ", ".join(GROUPS) + " (default: one total).")
@click.option("--recent", type=click.IntRange(0, MAX_RECENT), default=0,
              help="Also show this many most recent runs.")
@click.option("--key", "key_id", metavar="KEY_ID",
              help="Only this key id's runs (local ledger; see `clinvk keys`).")
@click.option("--url", metavar="URL",
              help="Ask this running server instead (key from CLINVK_API_KEY).")
@json_option
@pass_app
def usage_cmd(app: AppContext, since: str | None, until: str | None, group_by: str | None,
              recent: int, key_id: str | None, url: str | None, as_json: bool) -> None:
    """Runs, tokens and cost from the usage ledger, summed by key, backend, model or day."""
    if key_id is not None and not re.fullmatch(r"[0-9a-f]{24}", key_id):
        raise click.BadParameter("must be a key id (24 hex digits, as `clinvk keys id` "
                                 "prints), never the key itself", param_hint="--key")
    if url and key_id:
        raise click.UsageError("--key reads the local ledger; a server shows the rows of "
                               "the key in CLINVK_API_KEY (an admin key: all)")
    report = (_remote_report(url, since, until, group_by, recent) if url
              else _local_report(app, since, until, group_by, recent, key_id))
    if as_json:
        print_json(report)
        return
    console = make_console()
    if not report["groups"]:
        click.echo("No runs in the ledger for this range.")
    else:
        console.print(_groups_table(report))
    if report["recent"]:
        console.print()
        console.print(_recent_table(report["recent"]))
