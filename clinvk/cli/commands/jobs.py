"""``clinvk jobs``: submit and follow background jobs on a running server (docs/jobs.md).

Talks to the server's native API with the standard library only; the key comes from
``CLINVK_API_KEY`` (never an argument: it would end up in the shell history).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8080"


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None
          ) -> Any:
    url = ctx.obj["url"].rstrip("/") + "/api/v1" + path
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("CLINVK_API_KEY", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}")
        raise click.ClickException(f"{exc.code}: {detail.get('error') or detail}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach {ctx.obj['url']}: {exc.reason}") from None
    return payload.get("data", payload) if isinstance(payload, dict) else payload


def _follow(ctx: click.Context, job_id: str, after: int) -> None:
    """Print the job's events as they come (message text live), until the job ends."""
    url = f"{ctx.obj['url'].rstrip('/')}/api/v1/jobs/{job_id}/events?after={after}"
    headers = {"Accept": "application/x-ndjson"}
    key = os.environ.get("CLINVK_API_KEY", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
        for raw in resp:
            if not raw.strip():
                continue  # keep-alive
            event = json.loads(raw)
            content = event.get("content") or {}
            if event["type"] == "message" and content.get("is_partial", True):
                click.echo(content.get("text", ""), nl=False)
            elif event["type"] == "job_end":
                click.echo(f"\n[job {job_id}: {content.get('status')}]")
            elif event["type"] in ("tool_use", "error", "events_dropped"):
                click.echo(f"\n[{event['type']}] {json.dumps(content)}", err=True)


@click.group("jobs")
@click.option("--url", default=lambda: os.environ.get("CLINVK_URL", DEFAULT_URL),
              show_default="CLINVK_URL or http://127.0.0.1:8080", help="Server base URL.")
@click.pass_context
def jobs_group(ctx: click.Context, url: str) -> None:
    """Background jobs on a running clinvk server (key from CLINVK_API_KEY)."""
    ctx.obj = {"url": url}


@jobs_group.command("submit")
@click.option("-b", "--backend", required=True)
@click.option("-f", "--follow", is_flag=True, help="Follow the job's output until it ends.")
@click.argument("prompt")
@click.pass_context
def submit(ctx: click.Context, backend: str, follow: bool, prompt: str) -> None:
    """Queue PROMPT as a job; print its id (and follow it with -f)."""
    job = _call(ctx, "POST", "/jobs", {"backend": backend, "prompt": prompt})
    click.echo(job["id"])
    if follow:
        _follow(ctx.parent, job["id"], 0)  # type: ignore[arg-type]


@jobs_group.command("list")
@click.option("--status")
@click.pass_context
def list_jobs(ctx: click.Context, status: str | None) -> None:
    """The newest jobs (one page)."""
    page = _call(ctx, "GET", "/jobs" + (f"?status={status}" if status else ""))
    for job in page["jobs"]:
        click.echo(f"{job['id']}  {job['status']:<9}  {job['backend'] or '-':<7}  "
                   f"{job['created_at']}")


@jobs_group.command("show")
@click.argument("job_id")
@click.pass_context
def show(ctx: click.Context, job_id: str) -> None:
    """The job object as JSON."""
    click.echo(json.dumps(_call(ctx, "GET", f"/jobs/{job_id}"), indent=2))


@jobs_group.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends.")
@click.pass_context
def logs(ctx: click.Context, job_id: str, follow: bool) -> None:
    """The job's output so far (with -f: live until it ends)."""
    if follow:
        _follow(ctx, job_id, 0)
        return
    job = _call(ctx, "GET", f"/jobs/{job_id}")
    click.echo((job.get("result") or {}).get("output", f"[job is {job['status']}]"))


@jobs_group.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel the job (idempotent); print its final status."""
    click.echo(_call(ctx, "POST", f"/jobs/{job_id}/cancel")["status"])
