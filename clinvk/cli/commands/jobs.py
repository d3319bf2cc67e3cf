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
    task: int | None = None  # sub-run of a parallel/chain/compare job last printed
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
        for raw in resp:
            if not raw.strip():
                continue  # keep-alive
            event = json.loads(raw)
            content = event.get("content") or {}
            if event.get("task") is not None and event["task"] != task:
                task = event["task"]
                click.echo(f"\n[task {task} · {event.get('backend', '')}]")
            if event["type"] == "task_end":
                click.echo(f"\n[task {event['task']}: {content.get('status')}]")
            elif event["type"] == "message" and content.get("is_partial", True):
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


KINDS = ("prompt", "parallel", "chain", "compare")


def _submit_body(kind: str, backends: tuple[str, ...], prompt: str | None,
                 body_file: Any) -> dict[str, Any]:
    """The POST /jobs body: the route body from --body, or built from -b and PROMPT."""
    if body_file is not None:
        try:
            body = json.load(body_file)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
        if not isinstance(body, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--body")
        if prompt is not None:
            body["prompt"] = prompt
        if backends and kind in ("prompt", "compare"):
            body["backend" if kind == "prompt" else "backends"] = (
                backends[0] if kind == "prompt" else list(backends))
        return {**body, "kind": kind}
    if kind in ("parallel", "chain"):
        raise click.UsageError(f"--kind {kind} needs --body FILE with the /{kind} body")
    if not backends or prompt is None:
        raise click.UsageError("give -b BACKEND and PROMPT (or --body FILE)")
    if kind == "compare":
        return {"kind": kind, "backends": list(backends), "prompt": prompt}
    return {"kind": kind, "backend": backends[0], "prompt": prompt}


@jobs_group.command("submit")
@click.option("-b", "--backend", "backends", multiple=True,
              help="Backend (repeat for --kind compare).")
@click.option("--kind", type=click.Choice(KINDS), default="prompt", show_default=True)
@click.option("--body", "body_file", type=click.File("r"),
              help="JSON file (or -) with the route's request body: /prompt, /parallel, "
                   "/chain or /compare.")
@click.option("--callback-url", help="Webhook URL (on the server's allow-list) that gets the "
                                     "signed job object when the job finishes.")
@click.option("-f", "--follow", is_flag=True, help="Follow the job's output until it ends.")
@click.argument("prompt", required=False)
@click.pass_context
def submit(ctx: click.Context, backends: tuple[str, ...], kind: str, body_file: Any,
           callback_url: str | None, follow: bool, prompt: str | None) -> None:
    """Queue a job (PROMPT on -b BACKEND, or the --body of a kind's route); print its id
    (and follow it with -f)."""
    body = _submit_body(kind, backends, prompt, body_file)
    if callback_url:
        body["callback_url"] = callback_url
    job = _call(ctx, "POST", "/jobs", body)
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
