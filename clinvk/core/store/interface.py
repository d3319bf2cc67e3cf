"""What the engine, the job service and the edges need from a store, and nothing more.

One implementation per database: :class:`clinvk.core.store.sqlite.SqliteStore` (embedded,
the default) and :class:`clinvk.core.store.postgresql.PostgresStore` (shared by several
gateways), each with its own ``sql/<dialect>`` migrations. Callers open a store with
:func:`clinvk.core.store.open_store` (or ``configured_store``) and see only these protocols.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from clinvk.core.events import TokenUsage
from clinvk.core.ownership import Principal
from clinvk.core.store.records import FirstTurn, Session, SessionJsonPage, SessionPage
from clinvk.core.types import SessionStatus

if TYPE_CHECKING:
    from clinvk.core.jobs.model import Job, JobKind, JobPage, JobStatus
    from clinvk.core.jobs.responses import ResponseRecord
    from clinvk.core.usage.rows import UsageRow

__all__ = ["JobTable", "ResponseTable", "SessionLease", "Store", "UsageTable"]


class SessionLease(AbstractContextManager["SessionLease"], Protocol):
    """The claim that one turn of a session is running; expires unless renewed."""

    session_id: str | None
    owner: str
    ttl_seconds: float
    expires_at: float | None

    @property
    def held(self) -> bool: ...

    def acquire(self) -> SessionLease: ...

    def renew(self, ttl_seconds: float | None = None) -> None: ...

    def release(self) -> None: ...


class JobTable(Protocol):
    """Durable jobs and their event logs; the cancel flag is how workers reach each other."""

    def create(self, kind: JobKind, request: dict[str, Any], *, owner: str | None,
               backend: str | None, max_queued: int,
               webhook: dict[str, Any] | None = None) -> Job | None: ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, *, owner: str | None, sees_all: bool, status: str | None = None,
             kind: str | None = None, backend: str | None = None, since: float | None = None,
             before: tuple[float, str] | None = None, limit: int = 50) -> JobPage: ...

    def claim(self, job_id: str, pid: int, ttl_secs: float = ...) -> bool:
        """Take a queued job to dispatch; it stays queued until :meth:`start`."""
        ...

    def renew_claim(self, job_id: str, pid: int, ttl_secs: float) -> bool: ...

    def start(self, job_id: str, pid: int) -> bool:
        """queued -> running, by the claim's holder, once the run has started."""
        ...

    def set_session(self, job_id: str, session_id: str | None, backend: str | None
                    ) -> None: ...

    def finish(self, job_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: str | None = None, only_from: tuple[JobStatus, ...] = ()) -> bool: ...

    def set_webhook(self, job_id: str, record: dict[str, Any]) -> None: ...

    def request_cancel(self, job_id: str) -> None: ...

    def cancel_requested(self, job_id: str) -> bool: ...

    def delete(self, job_id: str) -> None: ...

    def orphaned_running(self) -> list[str]: ...

    def queued(self) -> list[str]: ...

    def prune(self, *, max_age_secs: float, max_count: int) -> int: ...

    def append_event(self, job_id: str, event: dict[str, Any], *, cap: int) -> int: ...

    def events_after(self, job_id: str, after: int, limit: int = 500
                     ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class ResponseTable(Protocol):
    """Stored responses of a dialect API, by the id it handed out."""

    def save(self, record: ResponseRecord) -> None: ...

    def get(self, record_id: str) -> ResponseRecord | None: ...

    def delete(self, record_id: str) -> None: ...

    def prune(self, *, max_age_secs: float, max_count: int) -> int: ...

    def close(self) -> None: ...


class UsageTable(Protocol):
    """The usage ledger's rows: appended once per finished run, read in sums and newest
    first. Rows are filtered like jobs: ``sees_all`` or only those of key id ``owner``."""

    def insert(self, row: UsageRow) -> None: ...

    def delete_before(self, cutoff: float) -> int: ...

    def sums(self, group_by: tuple[str, ...], *, since: float | None, until: float | None,
             owner: str | None, sees_all: bool) -> list[tuple[Any, ...]]:
        """Per group (``UsageGroup`` names): its values in order, then
        ``clinvk.core.usage.rows.SUM_NAMES``; one row of sums (maybe all NULL) without grouping."""
        ...

    def newest(self, limit: int, *, since: float | None, until: float | None,
               owner: str | None, sees_all: bool) -> list[UsageRow]: ...

    def close(self) -> None: ...


class Store(Protocol):
    """Sessions (with their leases) and, through :attr:`jobs`, :attr:`responses` and
    :attr:`usage`, the other tables of the same database."""

    @property
    def jobs(self) -> JobTable: ...

    @property
    def responses(self) -> ResponseTable: ...

    @property
    def usage(self) -> UsageTable: ...

    def create(self, *, backend: str, working_dir: str, model: str | None = None,
               initial_prompt: str = "", tags: Iterable[str] = (),
               metadata: dict[str, Any] | None = None, parent_id: str | None = None,
               status: str = SessionStatus.ACTIVE, backend_session_id: str | None = None,
               lease: Any = None, owner: str | None = None,
               first_turn: FirstTurn | None = None) -> Session: ...

    def get(self, id_or_prefix: str, *, visible_to: Principal | None = None) -> Session: ...

    def list(self, *, backend: str | None = None, status: str | None = None,
             tag: str | None = None, working_dir: str | None = None, limit: int = 100,
             offset: int = 0, visible_to: Principal | None = None,
             cursor: str | None = None) -> SessionPage: ...

    def list_json(self, *, backend: str | None = None, status: str | None = None,
                  tag: str | None = None, working_dir: str | None = None, limit: int = 100,
                  offset: int = 0, visible_to: Principal | None = None,
                  cursor: str | None = None) -> SessionJsonPage:
        """The page :meth:`list` gives, as the rows' stored encodings: what an edge that
        only serialises the records needs (no Python object per row)."""
        ...

    def latest(self, *, backend: str | None = None, working_dir: str | None = None,
               resumable: bool = False, visible_to: Principal | None = None
               ) -> Session | None: ...

    def count(self, *, backend: str | None = None, status: str | None = None,
              tag: str | None = None, visible_to: Principal | None = None) -> int: ...

    def record_turn(self, session_id: str, *, usage: TokenUsage | None = None,
                    backend_session_id: str | None = None, status: str | None = None,
                    error_message: str | None = None, model: str | None = None,
                    turns: int = 1, release: Any = None) -> Session: ...

    def update(self, session_id: str, **fields: Any) -> Session: ...

    def delete(self, id_or_prefix: str, *, force: bool = False,
               visible_to: Principal | None = None) -> Session: ...

    def cleanup(self, *, older_than_seconds: float, dry_run: bool = False
                ) -> list[Session]: ...

    def busy(self, session_id: str, *, ttl_seconds: float = ...) -> SessionLease: ...

    def new_lease(self, *, ttl_seconds: float = ...) -> SessionLease: ...

    def close(self) -> None: ...
