"""Queue names and Redis keys: one place, so both sides always agree."""

from __future__ import annotations

from dataclasses import dataclass

#: The one Celery task: run a backend invocation on this host.
RUN_TASK = "clinvk.run"
#: After an ephemeral run: remove what its CLI left on the host that ran it.
CLEANUP_TASK = "clinvk.cleanup"


@dataclass(frozen=True)
class Names:
    prefix: str = "clinvk"

    def backend_queue(self, backend: str) -> str:
        """New runs of ``backend``: every host serving it consumes this queue."""
        return f"{self.prefix}.backend.{backend}"

    def host_queue(self, host: str) -> str:
        """Runs that must happen on ``host`` (resumes of sessions it holds)."""
        return f"{self.prefix}.host.{host}"

    def run_stream(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def run_cancel(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:cancel"

    def run_claim(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:claim"

    def run_reader(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:reader"

    def host_key(self, host: str) -> str:
        return f"{self.prefix}:host:{host}"

    def hosts_index(self) -> str:
        return f"{self.prefix}:hosts"

    def session_host(self, session_id: str) -> str:
        return f"{self.prefix}:session-host:{session_id}"
