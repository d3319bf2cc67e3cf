"""The agent-host side of one run: start the CLI here, pour its output into the channel.

The run goes through the same :class:`~clinvk.core.process.ProcessRun` as a local one
(own process group, limits, the kill ladder, the crash ledger); only where its lines go
differs. Parsing, session records and metrics stay with the gateway that reads them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from clinvk.core.backends import Registry
from clinvk.core.errors import BackendUnavailable
from clinvk.core.process import Limits, ProcessRun
from clinvk.core.remote.channel import RunChannel
from clinvk.core.remote.names import Names
from clinvk.core.types import EndReason, RunEntryKind

log = logging.getLogger("clinvk.worker")

#: How often a running CLI's cancel flag and reader lease are looked at.
CONTROL_POLL_SECS = 0.1


@dataclass
class AgentHost:
    """What every run on this host shares (built once by ``clinvk worker``)."""

    name: str
    backends: tuple[str, ...]
    registry: Registry
    client: Any  # redis.Redis, decode_responses=True
    names: Names
    heartbeat_secs: float
    stream_ttl: float

    def channel(self, run_id: str) -> RunChannel:
        return RunChannel(self.client, self.names, run_id, self.stream_ttl)


def run_invocation(host: AgentHost, payload: dict[str, Any]) -> None:
    """The task body: one backend invocation, start to end entry."""
    channel = host.channel(payload["run_id"])
    if channel.cancel_reason() or not channel.reader_alive():
        return  # the gateway gave up waiting (or is gone) before this host took the run
    if not channel.claim(host.name):
        return  # a redelivered copy: the run was started once, it never starts twice
    process = _start(host, channel, payload)
    if process is None:
        return
    try:
        _pump(host, channel, process)
    except redis.RedisError:
        # Nobody can see this run's output any more: stop the CLI rather than let it
        # work on unobserved (its gateway reports the run lost).
        log.exception("run %s: lost the event channel; stopping the CLI", channel.run_id)
        process.abort(EndReason.CANCELLED)
        return
    outcome = process.outcome
    assert outcome is not None
    channel.put(RunEntryKind.END, data=dataclasses.asdict(outcome))


def _start(host: AgentHost, channel: RunChannel, payload: dict[str, Any]) -> ProcessRun | None:
    name = payload["backend"]
    backend = host.registry.get(name)
    if name not in host.backends or not backend.available:
        channel.put(RunEntryKind.REFUSED, data={
            "message": f"agent host {host.name!r} cannot run backend {name!r}: "
                       f"{backend.command!r} was not found or is not served here"})
        return None
    process = ProcessRun([backend.command, *payload["args"]], stdin=payload["stdin"],
                         env=backend.child_env(), cwd=payload["cwd"],
                         limits=Limits(**payload["limits"]))
    try:
        process.start()
    except BackendUnavailable as exc:
        channel.put(RunEntryKind.REFUSED, data={"message": exc.message})
        return None
    assert process.proc is not None
    channel.put(RunEntryKind.START, data={"host": host.name, "pid": process.proc.pid})
    return process


def _pump(host: AgentHost, channel: RunChannel, process: ProcessRun) -> None:
    last_sent = last_control = time.monotonic()
    for line in process.lines(heartbeat=CONTROL_POLL_SECS):
        now = time.monotonic()
        if line is not None:
            channel.put(RunEntryKind.LINE, line=line)
            last_sent = now
        elif now - last_sent >= host.heartbeat_secs:
            channel.put(RunEntryKind.BEAT)
            last_sent = now
        if now - last_control >= CONTROL_POLL_SECS:
            last_control = now
            reason = channel.cancel_reason()
            if reason:
                known = reason in EndReason.__members__.values()
                process.cancel(EndReason(reason) if known else EndReason.CANCELLED)
            elif not channel.reader_alive():
                process.cancel(EndReason.CANCELLED)  # its gateway is gone: nobody will read this
