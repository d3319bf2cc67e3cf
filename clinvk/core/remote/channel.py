"""One remote run's channel: a Redis Stream of entries plus two small control keys.

The worker appends ``start``, then every stdout ``line`` of the CLI as it is read (``beat``
when it is silent), and ``end`` with the outcome; the gateway blocks on ``XREAD`` and so
sees each line within a network round trip. Control goes the other way through plain keys
the worker looks at between reads: ``cancel`` (a reason) and ``reader`` (refreshed by the
gateway while someone reads; when it expires nobody will ever read the output, and the
worker stops the CLI). Everything expires ``ttl`` seconds after its last write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from clinvk.core.remote.names import Names
from clinvk.core.types import RunEntryKind

#: Connecting to Redis (or a reply, beyond a blocking read's own wait) may take this long.
CONNECT_TIMEOUT_SECS = 2.0
#: The longest a blocking read waits for entries (the socket allows for it).
MAX_BLOCK_SECS = 1.0


def connect(url: str) -> redis.Redis:
    """A client for the run channels and host records (one pool per process)."""
    return redis.Redis.from_url(url, decode_responses=True,
                                socket_connect_timeout=CONNECT_TIMEOUT_SECS,
                                socket_timeout=CONNECT_TIMEOUT_SECS + MAX_BLOCK_SECS)


@dataclass(frozen=True)
class Entry:
    id: str
    kind: RunEntryKind
    fields: dict[str, str]

    def data(self) -> dict[str, Any]:
        """The JSON payload of ``start``/``end``/``refused`` entries."""
        return json.loads(self.fields.get("j", "{}"))


class RunChannel:
    def __init__(self, client: Any, names: Names, run_id: str, ttl: float) -> None:
        self.client = client  # a redis.Redis with decode_responses=True
        self.run_id = run_id
        self.ttl = max(int(ttl), 1)
        self._stream = names.run_stream(run_id)
        self._cancel = names.run_cancel(run_id)
        self._reader = names.run_reader(run_id)
        self._claim = names.run_claim(run_id)

    # -- worker side --------------------------------------------------------------------------

    def put(self, kind: RunEntryKind, *, line: str | None = None,
            data: dict[str, Any] | None = None) -> None:
        fields = {"k": str(kind)}
        if line is not None:
            fields["d"] = line
        if data is not None:
            fields["j"] = json.dumps(data)
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self._stream, fields)
        pipe.expire(self._stream, self.ttl)
        pipe.execute()

    def claim(self, host: str) -> bool:
        """True for the one host that may start this run: a redelivered copy of the task
        (Celery restores unacknowledged messages) finds it claimed and does nothing."""
        return bool(self.client.set(self._claim, host, nx=True, ex=self.ttl))

    def cancel_reason(self) -> str | None:
        return self.client.get(self._cancel)

    def reader_alive(self) -> bool:
        return bool(self.client.exists(self._reader))

    # -- gateway side -------------------------------------------------------------------------

    def read(self, after: str, block_secs: float) -> list[Entry]:
        """Entries after ``after`` (``"0"`` = from the start), waiting up to ``block_secs``."""
        block = min(max(block_secs, 0.001), MAX_BLOCK_SECS)
        reply = self.client.xread({self._stream: after}, block=int(block * 1000) or 1)
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append(Entry(entry_id, RunEntryKind(fields["k"]), fields))
        return entries

    def taken_by(self) -> str | None:
        """The host that claimed this run, if one has (it started the CLI, or is about to)."""
        return self.client.get(self._claim)

    def reopen(self) -> None:
        """Forget the withdrawal of a run that no host has taken: a gateway taking over a
        queued job places it again under the same name (the host checks the claim first)."""
        self.client.delete(self._cancel)

    def keep_reader(self, ttl: float) -> None:
        self.client.set(self._reader, "1", ex=max(int(ttl), 1))

    def cancel(self, reason: str) -> None:
        """Ask the worker to stop the CLI; the first reason given is kept."""
        self.client.set(self._cancel, reason, ex=self.ttl, nx=True)
