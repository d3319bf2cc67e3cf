"""``clinvk parallel``, ``chain`` and ``compare``: several runs with live progress (ephemeral)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.cli.interrupts import cancel_all_runs, interrupted_exit, run_interruptible
from clinvk.cli.options import (
    absolute_dir,
    dry_run_option,
    json_option,
    read_prompt,
    run_fields,
    run_options,
    stdin_text,
)
from clinvk.cli.output import ExitCode, note, print_json
from clinvk.cli.render import (
    ProgressView,
    compare_table,
    make_console,
    one_line,
    print_outputs,
    seconds,
    summary_line,
)
from clinvk.cli.taskfiles import load_chain_file, load_parallel_file
from clinvk.core.config import KNOWN_BACKENDS
from clinvk.core.engine import PromptRequest
from clinvk.core.errors import ClinvkError
from clinvk.core.orchestrate import (
    JobReport,
    TaskOutcome,
    UpdateFn,
    run_chain,
    run_compare,
    run_parallel,
)
from clinvk.core.types import TaskState


def _progress_stream(as_json: bool) -> tuple[IO[str] | None, bool]:
    """Where live progress goes: stdout (text mode) or a terminal stderr (--json)."""
    if as_json:
        return (sys.stderr, True) if sys.stderr.isatty() else (None, False)
    return sys.stdout, sys.stdout.isatty()


def run_job(labels: list[tuple[str, str]], title: str, as_json: bool,
            job: Callable[[UpdateFn], JobReport]) -> JobReport:
    """Run an orchestration with live progress; exits 130 when interrupted."""
    stream, live = _progress_stream(as_json)
    stopping = threading.Event()
    view = ProgressView(labels, stream, live=live, title=title)

    def on_update(index: int, state: str, outcome: TaskOutcome | None) -> None:
        if state == TaskState.RUNNING and stopping.is_set():
            raise KeyboardInterrupt  # interrupted: start nothing new
        view.update(index, state, outcome)

    def cancel() -> None:
        stopping.set()
        cancel_all_runs()

    with view:
        report, interrupted = run_interruptible(lambda: job(on_update), cancel)
    if interrupted or report is None:
        interrupted_exit()
    assert report is not None
    return report


def job_exit(report: JobReport, noun: str) -> int:
    """0 when every task succeeded; else 1 with one line on stderr."""
    total = len(report.outcomes)
    if report.completed == total:
        return ExitCode.OK
    click.echo(f"clinvk: error: {total - report.completed} of {total} {noun}(s) did not "
               "succeed", err=True)
    return ExitCode.FAILURE


def _outcome_dict(outcome: TaskOutcome, key: str, value: int) -> dict[str, Any]:
    return {key: value, **outcome.to_dict()}


def _task_labels(app: AppContext, requests: list[PromptRequest], names: list[str | None]
                 ) -> list[tuple[str, str]]:
    default = app.config.default_backend
    return [(req.backend or default, name or one_line(req.prompt, 60))
            for req, name in zip(requests, names, strict=True)]


def _with_run_defaults(req: PromptRequest, timeout: float | None,
                       dry_run: bool) -> PromptRequest:
    return replace(req, timeout_secs=req.timeout_secs or timeout,
                   dry_run=req.dry_run or dry_run)


def _print_report(app: AppContext, report: JobReport, labels: list[tuple[str, str]],
                  heading: str, noun: str) -> None:
    console = make_console()
    console.print()
    print_outputs(console, report, labels, heading=heading)
    console.print(summary_line(report, noun), style="bold")


@click.command("parallel")
@click.option("-f", "--file", "path", required=True,
              help="Task file (.json, .yaml) or - for stdin.")
@click.option("--max-parallel", type=click.IntRange(min=1),
              help="Tasks at once (default: the file's max_parallel, else parallel.max_workers).")
@click.option("--fail-fast/--no-fail-fast", default=None,
              help="Cancel the other tasks on the first failure.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Timeout per task in seconds (a task's timeout_secs wins).")
@dry_run_option
@json_option
@pass_app
def parallel_cmd(app: AppContext, path: str, max_parallel: int | None, fail_fast: bool | None,
                 timeout: float | None, dry_run: bool, as_json: bool) -> None:
    """Run the tasks of a file concurrently (always ephemeral).

    \b
    {"tasks": [{"backend": "claude", "prompt": "review auth.py"},
               {"backend": "codex", "prompt": "add logging", "workdir": "api"}],
     "max_parallel": 2, "fail_fast": false}
    """
    spec = load_parallel_file(path, stdin_text)
    requests = [_with_run_defaults(t.request, timeout, dry_run) for t in spec.tasks]
    labels = _task_labels(app, requests, [t.name for t in spec.tasks])
    engine = app.engine(with_store=False)
    workers = max_parallel or spec.max_parallel or app.config.parallel.max_workers
    fail_fast = spec.fail_fast if fail_fast is None else fail_fast
    if fail_fast is None:
        fail_fast = app.config.parallel.fail_fast
    title = f"Running {len(requests)} task(s), {workers} at a time" + \
        (", fail-fast" if fail_fast else "")
    report = run_job(labels, title, as_json, lambda on_update: run_parallel(
        engine, requests, max_parallel=workers, fail_fast=fail_fast, on_update=on_update))
    for outcome, task in zip(report.outcomes, spec.tasks, strict=True):
        outcome.name = task.name
    if as_json:

        print_json({
            "total_tasks": len(report.outcomes), "completed": report.completed,
            "failed": report.failed, "cancelled": report.cancelled,
            "total_duration_ms": report.total_duration_ms,
            "results": [_outcome_dict(o, "index", o.index) for o in report.outcomes],
        })
    else:
        _print_report(app, report, labels, "task", "task")
    sys.exit(job_exit(report, "task"))


@click.command("chain")
@click.option("-f", "--file", "path", required=True,
              help="Step file (.json, .yaml) or - for stdin.")
@click.option("--stop-on-failure/--continue-on-failure", default=None,
              help="Stop at the first failed step (default: the file's stop_on_failure, "
                   "else continue).")
@click.option("--pass-working-dir/--no-pass-working-dir", default=None,
              help="A step without workdir runs where the previous step ran.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Timeout per step in seconds (a step's timeout_secs wins).")
@dry_run_option
@json_option
@pass_app
def chain_cmd(app: AppContext, path: str, stop_on_failure: bool | None,
              pass_working_dir: bool | None, timeout: float | None, dry_run: bool,
              as_json: bool) -> None:
    """Run the steps of a file in order; {{previous}} is the previous step's output.

    \b
    {"steps": [{"name": "analyze", "backend": "claude", "prompt": "list the bugs"},
               {"name": "fix", "backend": "codex", "prompt": "fix these: {{previous}}"}],
     "stop_on_failure": true}
    """
    spec = load_chain_file(path, stdin_text)
    steps = [replace(s, request=_with_run_defaults(s.request, timeout, dry_run))
             for s in spec.steps]
    labels = _task_labels(app, [s.request for s in steps], [s.name for s in steps])
    stop = stop_on_failure if stop_on_failure is not None else bool(spec.stop_on_failure)
    pass_dir = pass_working_dir if pass_working_dir is not None else \
        bool(spec.pass_working_dir)
    engine = app.engine(with_store=False)
    title = f"Chain of {len(steps)} step(s)" + (", stop on failure" if stop else "")
    report = run_job(labels, title, as_json, lambda on_update: run_chain(
        engine, steps, stop_on_failure=stop, pass_working_dir=pass_dir, on_update=on_update))
    failed = report.failed_steps
    if as_json:

        data: dict[str, Any] = {"total_steps": len(steps), "completed_steps": report.completed}
        if failed:
            data["failed_step"] = failed[0]
        data["total_duration_ms"] = report.total_duration_ms
        data["results"] = [_outcome_dict(o, "step", o.index + 1) for o in report.outcomes]
        print_json(data)
    else:
        _print_report(app, report, labels, "step", "step")
    sys.exit(job_exit(report, "step"))


def _compare_backends(app: AppContext, given: tuple[str, ...], all_backends: bool,
                      dry_run: bool) -> list[str]:
    if given and all_backends:
        raise click.UsageError("use either -b/--backends or --all-backends, not both")
    if all_backends:
        registry = app.engine(with_store=False).registry
        names = []
        for backend in registry:
            if dry_run or backend.available:
                names.append(backend.name)
            else:
                note(f"skipping {backend.name}: not installed")
        if not names:
            raise ClinvkError("no backend is installed; see: clinvk version")
        return names
    names = [n.strip().lower() for item in given for n in item.split(",") if n.strip()]
    if not names:
        raise click.UsageError("name the backends to compare (-b claude,codex) or use "
                               "--all-backends")
    for name in names:
        if name not in KNOWN_BACKENDS:
            raise click.BadParameter(f"unknown backend {name!r} (known: "
                                     f"{', '.join(KNOWN_BACKENDS)})",
                                     param_hint="'-b/--backends'")
    return list(dict.fromkeys(names))


@click.command("compare")
@click.argument("prompt", required=False)
@click.option("-b", "--backends", "backends", multiple=True,
              help="Comma-separated backends, e.g. claude,codex (repeatable).")
@click.option("--all-backends", is_flag=True, help="Every installed backend.")
@click.option("--sequential", is_flag=True, help="One backend after the other.")
@click.option("-w", "--workdir", type=click.Path(file_okay=False),
              help="Directory the agents work in (default: the current one).")
@run_options
@dry_run_option
@json_option
@pass_app
def compare_cmd(app: AppContext, prompt: str | None, backends: tuple[str, ...],
                all_backends: bool, sequential: bool, workdir: str | None, dry_run: bool,
                as_json: bool, **opts: Any) -> None:
    """Send the same PROMPT to several backends and compare (always ephemeral)."""
    prompt = read_prompt(prompt)
    names = _compare_backends(app, backends, all_backends, dry_run)
    base = PromptRequest(prompt=prompt, workdir=absolute_dir(workdir),
                         dry_run=dry_run,
                         **run_fields(opts))
    engine = app.engine(with_store=False)
    labels = [(name, "") for name in names]
    title = f"Comparing {len(names)} backend(s)" + (", one at a time" if sequential else "")
    report = run_job(labels, title, as_json, lambda on_update: run_compare(
        engine, base, names, sequential=sequential, on_update=on_update))
    if as_json:

        print_json({"prompt": prompt, "backends": names,
                    "results": [o.to_dict() for o in report.outcomes],
                    "total_duration_ms": report.total_duration_ms})
    else:

        console = make_console()
        console.print()
        print_outputs(console, report, labels, heading=None)
        console.print(compare_table(report))
        console.print(f"\nTotal time: {seconds(report.total_duration_ms)}", style="bold")
    sys.exit(job_exit(report, "backend"))
