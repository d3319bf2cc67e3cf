"""Which agent hosts are alive, what they serve, and which host holds which session.

A worker rewrites its host record every ``execution.heartbeat_secs`` with an expiry of
``execution.lost_after_secs``: a host whose record expired is gone. The session → host
map has no expiry: a session's backend state lives in that host's CLI files for as long as
the session exists (Redis must persist it, docs/deployment.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from clinvk.core.remote.names import Names


@dataclass(frozen=True)
class HostInfo:
    name: str
    backends: tuple[str, ...]
    concurrency: int
    pid: int = 0
    seen: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, text: str) -> HostInfo:
        data = json.loads(text)
        return cls(name=data["name"], backends=tuple(data["backends"]),
                   concurrency=int(data["concurrency"]), pid=int(data.get("pid", 0)),
                   seen=float(data.get("seen", 0.0)))


class HostDirectory:
    def __init__(self, client: Any, names: Names, lost_after: float) -> None:
        self.client = client
        self.names = names
        self.lost_after = max(int(lost_after), 1)

    def beat(self, info: HostInfo) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.names.host_key(info.name), json.dumps(asdict(info)), ex=self.lost_after)
        pipe.sadd(self.names.hosts_index(), info.name)
        pipe.execute()

    def leave(self, name: str) -> None:
        """A worker that stops cleanly says so at once instead of timing out."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.names.host_key(name))
        pipe.srem(self.names.hosts_index(), name)
        pipe.execute()

    def live(self) -> dict[str, HostInfo]:
        names = sorted(self.client.smembers(self.names.hosts_index()))
        if not names:
            return {}
        records = self.client.mget([self.names.host_key(n) for n in names])
        return {n: HostInfo.from_json(r) for n, r in zip(names, records, strict=True) if r}

    def holder(self, session_id: str) -> str | None:
        return self.client.get(self.names.session_host(session_id))

    def remember(self, session_id: str, host: str) -> None:
        self.client.set(self.names.session_host(session_id), host)

    def queue_depths(self, queues: list[str]) -> dict[str, int]:
        """Messages waiting in each Celery queue (the Redis transport keeps a list each)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
