"""``clinvk serve``: gunicorn (``gthread``) running the gateway in-process.

The same settings and hooks back both ways of running the server:

* ``clinvk serve`` -> :func:`run_server` -> :class:`GatewayServer` (a gunicorn
  ``BaseApplication``; the ``clinvk`` process is the gunicorn master);
* ``gunicorn -c gunicorn.conf.py`` with ``wsgi.py`` (the conf file imports
  :func:`gunicorn_settings`).

Config keys honoured: ``server.host``/``port``/``workers``/``threads`` (flags win),
``idle_timeout_secs`` (keep-alive), ``graceful_timeout_secs``, ``log_level``/``log_format``;
``request_timeout_secs`` is enforced per run by the engine, ``read_timeout_secs`` on the
request head by the worker class (:mod:`clinvk.server.runtime.worker`) and with
``write_timeout_secs`` per socket read/write by the app (see docs/deployment.md).

Shutdown: SIGTERM (graceful) and SIGINT (quick) both terminate the running backend
process groups at once, so in-flight requests finish promptly with a ``cancelled``
result, the workers exit and the master exits 0.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from clinvk.core import process as runner
from clinvk.core.config import Config
from clinvk.core.errors import StoreError
from clinvk.server.runtime import binding, logs, multiprocess
from clinvk.server.runtime.worker import worker_class

log = logging.getLogger("clinvk.server")



# --------------------------------------------------------------------------- banner


#: The banner's list of routes (the master prints it without building the app).
ENDPOINT_LINES: tuple[tuple[str, str], ...] = (
    ("Custom API", "/api/v1/prompt, /api/v1/parallel, /api/v1/chain, /api/v1/compare"),
    ("Sessions", "/api/v1/sessions, /api/v1/backends"),
    ("OpenAI", "/openai/v1/models, /openai/v1/chat/completions, /openai/v1/responses"),
    ("Anthropic", "/anthropic/v1/messages"),
    ("Docs", "/openapi.json, /docs"),
    ("Health", "/health"),
)


def banner(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    out = [f"clinvk API server starting on http://{shown}:{port}", "", "Available endpoints:"]
    out += [f"  {label + ':':<16}{paths}" for label, paths in ENDPOINT_LINES]
    out += ["", "Press Ctrl+C to stop"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- gunicorn hooks


def _when_ready(server: Any) -> None:
    """Master: print the banner with the address actually bound (port 0 = any free port)."""
    host, port = server.cfg.address[0] if server.cfg.address else ("127.0.0.1", 0)
    for listener in server.LISTENERS:
        try:
            name = listener.getsockname()
        except OSError:
            continue
        if isinstance(name, tuple):
            host, port = name[0], name[1]
            break
    sys.stdout.write(banner(str(host), int(port)))
    sys.stdout.flush()


def _terminate_runs_soon() -> None:
    # Signal handlers run on the main thread; the cancellation itself takes locks that
    # request threads also take, so it runs on its own thread.
    threading.Thread(target=runner.terminate_all, name="clinvk-shutdown", daemon=True).start()


def ledger_path(worker_pid: int) -> Path:
    """Where a worker lists its running backend process groups (see ``process.RunLedger``)."""
    from clinvk.core.config import clinvk_home

    return clinvk_home() / "run" / f"worker-{worker_pid}.runs"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kill_left_behind() -> int:
    """At start: kill the backends of workers of a previous server that died together with
    their master (``kill -9`` of the whole server), which no ``child_exit`` saw. Jobs those
    backends ran are marked lost by the job service; their processes must not run on."""
    killed = 0
    for ledger in sorted((ledger_path(0).parent).glob("worker-*.runs")):
        pid = ledger.stem.removeprefix("worker-")
        if pid.isdigit() and not _alive(int(pid)):
            killed += runner.kill_orphaned_groups(ledger)
    return killed


def _post_worker_init(worker: Any) -> None:
    """Worker: SIGTERM (graceful stop) also terminates the running backend process groups.

    The worker also keeps a run ledger, so that the master can kill its backends if the
    worker dies without stopping them (``kill -9``, the OOM killer).
    """
    runner.use_ledger(runner.RunLedger(ledger_path(os.getpid())))
    original = worker.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        original(sig, frame)
        _terminate_runs_soon()

    signal.signal(signal.SIGTERM, handle_exit)
    signal.siginterrupt(signal.SIGTERM, False)


def _worker_int(worker: Any) -> None:
    """Worker: SIGINT/SIGQUIT (quick stop)."""
    stopped = runner.terminate_all()
    if stopped:
        worker.log.info("terminated %d running backend process group(s)", stopped)


def _worker_exit(server: Any, worker: Any) -> None:
    """Worker leaving for any reason: nothing it started may outlive it."""
    runner.terminate_all()


def _child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker exited: kill the backends a killed worker left running."""
    killed = runner.kill_orphaned_groups(ledger_path(worker.pid))
    if killed:
        server.log.warning("worker %s exited with %d backend process group(s) still "
                           "running: killed them", worker.pid, killed)


# --------------------------------------------------------------------------- settings


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_settings(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """gunicorn settings for the gateway; ``None`` arguments come from ``server.*``."""
    srv = config.server
    observability_settings = multiprocess.gunicorn_settings(config)
    metrics_child_exit = observability_settings.pop("child_exit", None)

    def child_exit(server: Any, worker: Any) -> None:  # gunicorn checks: two arguments
        _child_exit(server, worker)
        if metrics_child_exit is not None:
            metrics_child_exit(server, worker)

    return {
        "bind": [_bind(host or srv.host, srv.port if port is None else port)],
        # gthread, plus a deadline on each request's head (slow-header clients)
        "worker_class": worker_class(srv.read_timeout_secs),
        "workers": workers or srv.workers,
        "threads": threads or srv.threads,
        # gthread workers heartbeat from their main loop, not from request threads, so this
        # only catches a wedged worker; long runs are bounded by request_timeout_secs.
        "timeout": 60,
        "graceful_timeout": srv.graceful_timeout_secs,
        "keepalive": srv.idle_timeout_secs,
        "loglevel": srv.log_level,
        "errorlog": "-",
        "accesslog": "-" if srv.access_log else None,
        "access_log_format": logs.ACCESS_LOG_FORMAT,
        "proc_name": "clinvk",
        # gunicorn >= 25.1 opens a control socket at a fixed per-user path by default;
        # two gateways on one host would fight over it.
        "control_socket_disable": True,
        "when_ready": _when_ready,
        "post_worker_init": _post_worker_init,
        "worker_int": _worker_int,
        "worker_exit": _worker_exit,
        # bind refusal, closing refused uploads; metrics directory, JSON gunicorn logs
        **binding.gunicorn_settings(config),
        **observability_settings,
        "child_exit": child_exit,
    }


def configure_logging(config: Config) -> None:
    """clinvk's own log lines (gunicorn keeps its own): level and text/json format."""
    handler = logs.log_handler(config, sys.stderr)  # text or JSON, with request id
    logger = logging.getLogger("clinvk")
    logger.handlers[:] = [handler]
    logger.setLevel(config.server.log_level.upper())
    logger.propagate = False


class GatewayServer(BaseApplication):
    """gunicorn application whose WSGI app is built by :func:`create_app` in each worker."""

    def __init__(self, config: Config, settings: dict[str, Any]) -> None:
        self.config = config
        self.settings = settings
        super().__init__(prog="clinvk serve")

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in self.settings.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from clinvk.server.app import create_app

        return create_app(self.config)


def run_server(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; exits the process (0 after a clean stop)."""
    settings = prepare_master(config, host=host, port=port, workers=workers, threads=threads)
    GatewayServer(config, settings).run()


def prepare_master(config: Config, **overrides: Any) -> dict[str, Any]:
    """What the master does before gunicorn starts, for ``clinvk serve`` and
    ``gunicorn -c gunicorn.conf.py`` alike; returns the gunicorn settings.

    The session store is opened once up front so that an unusable store is a clear error
    here rather than a worker that fails to boot; backends a killed server left running
    are stopped; with several workers the app's modules are loaded to be shared.
    """
    check_store(config)
    configure_logging(config)
    killed = kill_left_behind()
    if killed:
        logging.getLogger("clinvk.server").warning(
            "killed %d backend process group(s) left running by a previous server", killed)
    settings = gunicorn_settings(config, **overrides)
    if settings["workers"] > 1:
        share_app_code()
    return settings


def check_store(config: Config) -> None:
    """Open (and so migrate) the session store once before any worker starts, so that an
    unusable store is a clear error here. The check runs in a forked child: the master
    never loads the store, the engine and the jobs (the workers load their own copies),
    which keeps the master small (docs/performance.md, idle memory). The child sends back
    the exception it met, pickled, and the master raises it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no threads run in the master yet, so forking here is safe
        os.close(read_end)
        status = 0
        try:
            from clinvk.core.config import clinvk_home
            from clinvk.core.store import configured_store

            configured_store(config, clinvk_home()).close()
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the master
            status = 1
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(exc))
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status == 0:
        return
    try:
        error = pickle.loads(report)
    except Exception:  # noqa: BLE001 - a child killed before it could tell
        error = None
    if isinstance(error, BaseException):
        raise error
    raise StoreError(f"checking the session store failed (child status {status})")


def share_app_code() -> None:
    """Several workers: import the app's modules (never build the app: no store, no
    threads) in the master before it forks, so the workers share those pages instead of
    each loading its own copy. One worker has nothing to share it with, so the master
    stays small (measured in docs/performance.md, idle memory)."""
    from clinvk.server import app

    for path in (*app.API_BLUEPRINTS, *app.PLAIN_BLUEPRINTS, *app.EXTENSIONS):
        importlib.import_module(path.partition(":")[0])
