"""Prometheus multiprocess mode under gunicorn: the master's side.

The master gives every worker one ``PROMETHEUS_MULTIPROC_DIR`` before the first fork (a
private temporary directory, or the operator's own, emptied), marks exited workers dead and
removes its temporary directory on exit; ``/metrics`` on any worker then aggregates every
worker. prometheus_client reads that variable when it is first imported, so nothing here
imports it before the hooks ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from clinvk.core.config import Config
from clinvk.server.runtime.logs import gunicorn_logger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_metrics_dir: dict[str, Any] = {"path": None, "owned": False}


def prepare_multiprocess_dir() -> str:
    """Master, once: a usable ``PROMETHEUS_MULTIPROC_DIR`` before any worker forks."""
    if _metrics_dir["path"] is not None:
        return _metrics_dir["path"]
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # values of a previous run would be summed in
            stale.unlink(missing_ok=True)
        _metrics_dir.update(path=str(directory), owned=False)
    else:
        _metrics_dir.update(path=tempfile.mkdtemp(prefix="clinvk-metrics-"), owned=True)
        os.environ[MULTIPROC_ENV] = _metrics_dir["path"]
    return _metrics_dir["path"]


def _pre_fork(server: Any, worker: Any) -> None:
    prepare_multiprocess_dir()


def _child_exit(server: Any, worker: Any) -> None:
    if _metrics_dir["path"] is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _on_exit(server: Any) -> None:
    if _metrics_dir["owned"] and _metrics_dir["path"]:
        shutil.rmtree(_metrics_dir["path"], ignore_errors=True)
        _metrics_dir.update(path=None, owned=False)


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """The hooks of metrics and logs (merged by ``serve.gunicorn_settings``)."""
    settings: dict[str, Any] = {}
    if config.server.metrics_enabled:
        settings.update(pre_fork=_pre_fork, child_exit=_child_exit, on_exit=_on_exit)
    settings["logger_class"] = gunicorn_logger(config.server.log_format)
    return settings
