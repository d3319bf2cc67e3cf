"""The gateway side: place a run on a queue, then read its CLI's lines from the channel.

:class:`RemoteProcess` stands in for a local :class:`~clinvk.core.process.ProcessRun`:
``start`` publishes the task and waits (at most ``server.queue_timeout_secs``) until a
host has the CLI running, so "all hosts busy", "broker down" and "host gone" are raised
before a response begins; ``lines`` yields what the CLI prints; the outcome comes from the
host's ``end`` entry, or is ``lost`` when the host fell silent for
``execution.lost_after_secs``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from kombu.exceptions import KombuError

from clinvk.core.config import Config
from clinvk.core.errors import (
    BackendUnavailable,
    BrokerUnavailable,
    HostUnavailable,
    RunAlreadyStarted,
    RunWithdrawn,
    Saturated,
)
from clinvk.core.execution import BackendProcess, Placement
from clinvk.core.process import Limits, ProcessOutcome
from clinvk.core.remote.channel import Entry, RunChannel, connect
from clinvk.core.remote.hosts import HostDirectory, HostInfo
from clinvk.core.remote.names import CLEANUP_TASK, RUN_TASK, Names
from clinvk.core.types import BrokerState, EndReason, HostFallback, RunEntryKind

if TYPE_CHECKING:
    from celery import Celery

    from clinvk.core.backends import Backend
    from clinvk.core.engine import PreparedRun
    from clinvk.core.store import Session

log = logging.getLogger("clinvk.remote")

#: A run not taken within the wait is withdrawn with this reason (a host that takes it
#: later sees the reason and skips it).
WITHDRAWN = "withdrawn"
BROKER_DOWN = ("the task broker (execution.broker_url) cannot be reached; nothing can run "
               "until it is back")


class RemoteRunner:
    def __init__(self, config: Config) -> None:
        execution = config.execution
        self.config = config
        self.names = Names(execution.queue_prefix)
        self.client = connect(execution.broker_url)
        self.hosts = HostDirectory(self.client, self.names, execution.lost_after_secs)
        self.lost_after = float(execution.lost_after_secs)
        self.heartbeat = float(execution.heartbeat_secs)
        self.start_wait = float(config.server.queue_timeout_secs)
        self.fallback = HostFallback(execution.host_fallback)
        self.stream_ttl = max(3600.0, config.server.request_timeout_secs * 2.0)
        self._app: Celery | None = None
        self._app_lock = threading.Lock()

    @property
    def app(self) -> Celery:
        """Built on first use, in the process that uses it (after gunicorn's fork)."""
        with self._app_lock:
            if self._app is None:
                from clinvk.core.remote.celeryapp import make_app

                self._app = make_app(self.config)
            return self._app

    def send(self, task: str, payload: dict[str, Any], queue: str) -> None:
        try:
            self.app.send_task(task, args=[payload], queue=queue, retry=False)
        except (KombuError, OSError, redis.RedisError) as exc:
            log.error("publishing %s to %s failed: %s", task, queue, exc)
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc

    def live_hosts(self) -> dict[str, HostInfo]:
        try:
            return self.hosts.live()
        except redis.RedisError as exc:
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc

    # -- the Runner interface -----------------------------------------------------------------

    def place(self, backend: Backend, session: Session | None) -> Placement:
        live = self.live_hosts()
        serving = sorted(h.name for h in live.values() if backend.name in h.backends)
        holder = self._holder(session.id) if session is not None else None
        if holder is not None:
            if holder in live and backend.name in live[holder].backends:
                return Placement(queue=self.names.host_queue(holder))
            if self.fallback is HostFallback.FAIL or not serving:
                raise HostUnavailable(
                    f"session {session.id if session else ''} is held by agent host {holder!r}, "
                    f"which is gone (no heartbeat for {self.lost_after:g} s); its backend "
                    "session cannot be continued elsewhere", retry_after=int(self.lost_after))
            return Placement(queue=self.names.backend_queue(backend.name), resume=False,
                             notice=f"agent host {holder!r} that held this session's backend "
                                    f"session is gone: a new {backend.name} session was "
                                    "started on another host (earlier turns are not in its "
                                    "context)")
        if not serving:
            raise BackendUnavailable(f"no agent host serves backend {backend.name!r} right "
                                     "now (see /health)")
        return Placement(queue=self.names.backend_queue(backend.name))

    def _holder(self, session_id: str) -> str | None:
        try:
            return self.hosts.holder(session_id)
        except redis.RedisError as exc:
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc

    def spawn(self, prepared: PreparedRun, limits: Limits,
              session_id: str | None) -> BackendProcess:
        return RemoteProcess(self, prepared, limits, session_id)

    def cleanup_ephemeral(self, prepared: PreparedRun, process: BackendProcess,
                          backend_session_id: str | None) -> None:
        host = getattr(process, "host", None)
        if host is None:
            return
        try:
            self.send(CLEANUP_TASK, {"backend": prepared.backend.name, "cwd": prepared.workdir,
                                     "backend_session_id": backend_session_id},
                      self.names.host_queue(host))
        except BrokerUnavailable:
            log.warning("could not ask host %s to clean up an ephemeral run", host)

    def withdraw(self, run_keys: list[str]) -> None:
        for key in run_keys:
            try:
                RunChannel(self.client, self.names, key, self.stream_ttl).cancel(
                    str(EndReason.CANCELLED))
            except redis.RedisError:
                log.warning("could not withdraw run %s: the broker is unreachable", key)

    def available(self, backend: Backend) -> bool:
        try:
            return any(backend.name in h.backends for h in self.hosts.live().values())
        except redis.RedisError:
            return False

    def status(self) -> dict[str, Any] | None:
        """The broker, the live hosts and the depth of every queue they consume."""
        try:
            live = self.hosts.live()
            queues = sorted({self.names.backend_queue(b) for h in live.values()
                             for b in h.backends} |
                            {self.names.host_queue(n) for n in live} |
                            {self.names.backend_queue(b.name) for b in self._backends()})
            depths = self.hosts.queue_depths(queues)
        except redis.RedisError:
            return {"mode": "celery", "broker": BrokerState.UNREACHABLE, "hosts": [], "queues": {}}
        hosts = [{"name": h.name, "backends": list(h.backends), "concurrency": h.concurrency}
                 for h in live.values()]
        return {"mode": "celery", "broker": BrokerState.OK, "hosts": hosts, "queues": depths}

    def _backends(self) -> list[Any]:
        from clinvk.core.backends import Registry

        return list(Registry.from_config(self.config))


class RemoteProcess:
    """A CLI running on an agent host, read through its channel."""

    def __init__(self, runner: RemoteRunner, prepared: PreparedRun, limits: Limits,
                 session_id: str | None) -> None:
        self.runner = runner
        self.prepared = prepared
        self.limits = limits
        self.session_id = session_id
        # A job's run keeps its name across gateways (see :meth:`_take_over`).
        self.run_id = prepared.request.run_key or uuid.uuid4().hex
        self.channel = RunChannel(runner.client, runner.names, self.run_id, runner.stream_ttl)
        self.outcome: ProcessOutcome | None = None
        self.host: str | None = None
        self._after = "0"
        self._pending: deque[Entry] = deque()
        self._started = 0.0
        self._last_keep = 0.0

    @property
    def placement(self) -> Placement:
        return self.prepared.placement or Placement()

    def _payload(self) -> dict[str, Any]:
        invocation = self.prepared.invocation
        return {"run_id": self.run_id, "backend": self.prepared.backend.name,
                "args": list(invocation.argv[1:]), "stdin": invocation.stdin,
                "cwd": self.prepared.workdir, "limits": dataclasses.asdict(self.limits)}

    def start(self) -> None:
        queue = self.placement.queue
        assert queue is not None, "a remote run is placed before it starts"
        self._started = time.monotonic()
        try:
            if self.prepared.request.run_key:
                self._take_over()
            self._keep_reader(force=True)
        except redis.RedisError as exc:
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc
        self.runner.send(RUN_TASK, self._payload(), queue)
        self._await_start(queue)

    def _take_over(self) -> None:
        """A named run may have been placed before, by a gateway that died while it waited
        for a host. If a host took it, it is never started again; if none did, the old
        task (still queued, or skipped because its reader was gone) and the one published
        now are the same run: whichever a host takes first starts it, the other is skipped
        (the host's claim), and this reader sees its stream from the start."""
        host = self.channel.taken_by()
        if host is not None:
            raise RunAlreadyStarted(
                f"run {self.run_id} was already started on agent host {host!r} before the "
                "gateway that placed it stopped; it is not started again")
        self.channel.reopen()

    def _await_start(self, queue: str) -> None:
        deadline = self._started + self.runner.start_wait
        next_host_check = self._started + self.runner.heartbeat
        while True:
            try:  # the reader lease is what tells a host that takes the run anyone waits
                self._keep_reader()
            except redis.RedisError as exc:
                raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc
            for entry in self._read(min(self.runner.heartbeat, MAX_WAIT_SECS)):
                if entry.kind is RunEntryKind.START:
                    self._on_start(entry)
                    return
                if entry.kind is RunEntryKind.REFUSED:
                    raise BackendUnavailable(entry.data().get("message", "the host refused"))
            now = time.monotonic()
            if now >= deadline:
                self._withdraw()
                raise Saturated(f"no agent host took the run within "
                                f"{self.runner.start_wait:g} s (server.queue_timeout_secs): "
                                f"every host serving {queue} is busy", retry_after=5)
            if now >= next_host_check:
                next_host_check = now + self.runner.heartbeat
                self._check_target_alive(queue)
                self._check_not_withdrawn()

    def _check_target_alive(self, queue: str) -> None:
        """A run waiting on one host's queue fails fast when that host goes away."""
        for name in self.runner.live_hosts():
            if self.runner.names.host_queue(name) == queue:
                return
        if queue.startswith(self.runner.names.host_queue("")):
            self._withdraw()
            raise HostUnavailable(f"the agent host of queue {queue} went away before it took "
                                  "the run", retry_after=int(self.runner.lost_after))

    def _check_not_withdrawn(self) -> None:
        """A job cancelled while its run waits for a host: stop waiting (hosts skip it)."""
        try:
            reason = self.channel.cancel_reason()
        except redis.RedisError as exc:
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc
        if reason is not None:
            raise RunWithdrawn(f"run {self.run_id} was withdrawn ({reason}) before an agent "
                               "host took it")

    def _withdraw(self) -> None:
        try:
            self.channel.cancel(WITHDRAWN)
        except redis.RedisError:
            pass

    def _on_start(self, entry: Entry) -> None:
        data = entry.data()
        self.host = str(data.get("host"))
        if self.session_id and not self.prepared.ephemeral:
            try:
                self.runner.hosts.remember(self.session_id, self.host)
            except redis.RedisError:
                log.warning("could not record host %s for session %s", self.host,
                            self.session_id)

    def _read(self, block: float) -> list[Entry]:
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
            return batch
        try:
            entries = self.channel.read(self._after, block)
        except redis.RedisError as exc:
            raise BrokerUnavailable(BROKER_DOWN, retry_after=5) from exc
        if entries:
            self._after = entries[-1].id
        return entries

    def _keep_reader(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_keep >= self.runner.heartbeat:
            self._last_keep = now
            self.channel.keep_reader(self.runner.lost_after)

    def lines(self, heartbeat: float | None = None) -> Iterator[str | None]:
        wait = min(heartbeat or MAX_WAIT_SECS, MAX_WAIT_SECS)
        heard = last_yield = time.monotonic()
        try:
            while self.outcome is None:
                try:
                    self._keep_reader()
                    entries = self._read(wait)
                except (BrokerUnavailable, redis.RedisError) as exc:
                    self._lose(f"lost contact with the broker: {exc}")
                    return
                now = time.monotonic()
                for entry in entries:
                    heard = now
                    if entry.kind is RunEntryKind.LINE:
                        last_yield = now
                        yield entry.fields.get("d", "")
                    elif entry.kind is RunEntryKind.END:
                        self.outcome = ProcessOutcome(**entry.data())
                        return
                if now - heard >= self.runner.lost_after:
                    self._lose(f"agent host {self.host!r} stopped answering for "
                               f"{self.runner.lost_after:g} s")
                    return
                if heartbeat and now - last_yield >= heartbeat:
                    last_yield = now
                    yield None
        finally:
            if self.outcome is None:  # the reader stopped early (client gone, shutdown)
                self.abort(EndReason.CANCELLED)

    def _lose(self, why: str) -> None:
        log.error("run %s on host %s is lost: %s", self.run_id, self.host, why)
        self._withdraw()
        self.outcome = ProcessOutcome(exit_code=None, reason=EndReason.LOST, stderr_tail=why,
                                      duration_ms=int((time.monotonic() - self._started) * 1000),
                                      output_bytes=0, pid=0)

    def cancel(self, reason: EndReason = EndReason.CANCELLED) -> None:
        try:
            self.channel.cancel(str(reason))
        except redis.RedisError:
            log.warning("could not pass the cancel of run %s to its host", self.run_id)

    def abort(self, reason: EndReason = EndReason.CANCELLED) -> None:
        """Stop without reading on: the host kills the CLI's process group."""
        self.cancel(reason)
        if self.outcome is None:
            self.outcome = ProcessOutcome(
                exit_code=None, reason=str(reason), stderr_tail="",
                duration_ms=int((time.monotonic() - self._started) * 1000),
                output_bytes=0, pid=0)


#: The longest one blocking read waits (a heartbeat is due at least this often).
MAX_WAIT_SECS = 1.0
