"""``clinvk worker``: this machine becomes an agent host.

It consumes its own host queue (resumes of the sessions it holds) and one queue per
backend it serves (new runs), announces itself every ``execution.heartbeat_secs``, and
runs each task's CLI locally (:mod:`clinvk.core.remote.agent`). Celery runs the tasks on
a thread pool: a run is a subprocess plus a read loop, so threads are all it needs.

Stopping: SIGTERM is Celery's warm shutdown (no new work; running CLIs finish), a second
SIGTERM or SIGQUIT the cold one. A worker killed outright leaves a crash ledger; the next
worker started under the same host name kills what is still running from it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import redis

from clinvk.core.backends import Registry
from clinvk.core.config import Config, clinvk_home
from clinvk.core.process import RunLedger, kill_orphaned_groups, terminate_all, use_ledger
from clinvk.core.remote.agent import AgentHost, run_invocation
from clinvk.core.remote.celeryapp import make_app
from clinvk.core.remote.channel import connect
from clinvk.core.remote.hosts import HostDirectory, HostInfo
from clinvk.core.remote.names import CLEANUP_TASK, RUN_TASK, Names

log = logging.getLogger("clinvk.worker")


def host_name(config: Config) -> str:
    return config.execution.host or socket.gethostname().split(".")[0]


def served_backends(config: Config, registry: Registry) -> tuple[str, ...]:
    """``execution.backends`` or else every enabled backend whose CLI is installed here."""
    wanted = config.execution.backends or tuple(b.name for b in registry)
    return tuple(name for name in wanted if name in registry and registry.get(name).available)


def _ledger(host: str) -> Path:
    return clinvk_home() / "run" / f"agent-{host}.runs"


def _heartbeat(directory: HostDirectory, info: HostInfo, every: float,
               stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            directory.beat(HostInfo(info.name, info.backends, info.concurrency, info.pid))
        except redis.RedisError as exc:
            log.warning("heartbeat to the broker failed: %s", exc)
        stop.wait(every)


def serve_worker(config: Config, *, concurrency: int, loglevel: str = "info") -> None:
    """Run the Celery worker in this process until it is stopped."""
    execution = config.execution
    names = Names(execution.queue_prefix)
    registry = Registry.from_config(config)
    host = host_name(config)
    backends = served_backends(config, registry)
    if not backends:
        raise SystemExit(f"agent host {host!r} serves no backend: none of "
                         f"{', '.join(execution.backends or registry.names())} is installed")
    client = connect(execution.broker_url)
    agent = AgentHost(name=host, backends=backends, registry=registry, client=client,
                      names=names, heartbeat_secs=execution.heartbeat_secs,
                      stream_ttl=max(3600, config.server.request_timeout_secs * 2))
    app = make_app(config)

    @app.task(name=RUN_TASK)
    def run(payload: dict[str, Any]) -> None:
        run_invocation(agent, payload)

    @app.task(name=CLEANUP_TASK)
    def cleanup(payload: dict[str, Any]) -> None:
        _cleanup(agent, payload)

    leftovers = kill_orphaned_groups(_ledger(host))
    if leftovers:
        log.warning("killed %d CLI process group(s) a previous worker %r left running",
                    leftovers, host)
    use_ledger(RunLedger(_ledger(host)))
    directory = HostDirectory(client, names, execution.lost_after_secs)
    stop = threading.Event()
    info = HostInfo(host, backends, concurrency, os.getpid())
    beats = threading.Thread(target=_heartbeat, name="clinvk-host-heartbeat", daemon=True,
                             args=(directory, info, execution.heartbeat_secs, stop))
    beats.start()
    queues = [names.host_queue(host), *(names.backend_queue(b) for b in backends)]
    log.info("agent host %s serves %s on queues %s", host, ", ".join(backends), ", ".join(queues))
    try:
        app.worker_main(["worker", f"--hostname=clinvk@{host}", f"--queues={','.join(queues)}",
                         f"--concurrency={concurrency}", "--pool=threads", "--without-gossip",
                         "--without-mingle", "--without-heartbeat", f"--loglevel={loglevel}"])
    finally:
        stop.set()
        terminate_all()
        try:
            directory.leave(host)
        except redis.RedisError:
            pass  # its record expires on its own


def _cleanup(agent: AgentHost, payload: dict[str, object]) -> None:
    """After an ephemeral run: remove the session files its CLI left on this host."""
    backend = agent.registry.get(str(payload["backend"]))
    backend.cleanup_ephemeral(payload.get("backend_session_id") and
                              str(payload["backend_session_id"]), str(payload["cwd"]),
                              backend.child_env())
