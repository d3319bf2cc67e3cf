"""A run's session bookkeeping: the busy lease, the session row, the recorded turn.

Protocol with the store: a run that continues a session first takes the session's busy
lease (a second turn of the same session gets ``SessionBusy``); a run that starts a session
creates the row already holding a new lease, so its first turn is guarded like every
other. Recording the turn gives the lease back, and :meth:`TurnRecorder.release` gives it
back on every other way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinvk.core.errors import StoreError
from clinvk.core.events import TokenUsage
from clinvk.core.store.keeper import LEASE_KEEPER
from clinvk.core.types import SessionStatus

if TYPE_CHECKING:
    from clinvk.core.backends.base import StreamParser
    from clinvk.core.engine.base import Engine
    from clinvk.core.engine.requests import PreparedRun, RunResult
    from clinvk.core.store import Session, SessionLease


class TurnRecorder:
    """Writes one run's turn into its session (nothing for ephemeral runs or no store)."""

    def __init__(self, engine: Engine, prepared: PreparedRun) -> None:
        self.engine = engine
        self.prepared = prepared
        self.session: Session | None = prepared.session
        self._lease: SessionLease | None = None
        # (usage, backend_session_id, model) of a turn recorded before the CLI exited
        self._early: tuple[TokenUsage | None, str | None, str | None] | None = None

    def _lease_ttl(self) -> float:
        """Short, and renewed by the process's keeper while the turn runs: a holder that
        dies or freezes frees its session within this bound (docs/sessions.md)."""
        return float(self.engine.config.session.lease_timeout_secs)

    def claim(self) -> None:
        """Take the busy lease of the session being continued (``SessionBusy`` if held)."""
        store = self.engine.store
        if self.session is not None and store is not None:
            lease = store.busy(self.session.id, ttl_seconds=self._lease_ttl())
            lease.__enter__()
            self._lease = lease
            LEASE_KEEPER.keep(lease)

    def release(self) -> None:
        """Give the lease back (idempotent; a recorded turn has given it back already)."""
        if self._lease is not None:
            lease, self._lease = self._lease, None
            LEASE_KEEPER.drop(lease)
            lease.__exit__(None, None, None)

    def open(self) -> str | None:
        """The id of the session this run records into, creating it for a first turn."""
        prepared, store = self.prepared, self.engine.store
        if prepared.ephemeral or store is None:
            return None
        if self.session is not None:
            return self.session.id
        req = prepared.request
        tags = list(dict.fromkeys([*self.engine.config.session.default_tags, *req.tags]))
        if not req.dry_run:
            self._lease = store.new_lease(ttl_seconds=self._lease_ttl())
        self.session = store.create(
            owner=req.principal.owner,
            backend=prepared.backend.name,
            working_dir=prepared.workdir,
            model=prepared.model,
            initial_prompt=req.prompt,
            tags=tags,
            metadata=req.metadata,
            parent_id=req.parent_id,
            status=SessionStatus.COMPLETED if req.dry_run else SessionStatus.ACTIVE,
            lease=self._lease,
        )
        if self._lease is not None:
            LEASE_KEEPER.keep(self._lease)
        self.engine.hooks.session_created(prepared.backend.name)
        return self.session.id

    def record_early(self, parser: StreamParser) -> None:
        """Record the turn as soon as the CLI printed a successful result.

        A CLI takes a while to exit after its last line, and the request waits for that
        exit anyway; writing the turn meanwhile takes the session write off the response's
        critical path. :meth:`record` then only amends it if the end differs (a non-zero
        exit, a kill, more usage). The same write gives the lease back: the session's next
        turn may start once this one's result is recorded.
        """
        store = self.engine.store
        parsed = parser.result
        if self.session is None or store is None or parsed.is_error or parsed.error:
            return
        usage = parsed.usage if self.engine.config.session.store_token_usage else None
        model = parsed.model or self.prepared.resolved_model
        try:
            store.record_turn(self.session.id, usage=usage, status=SessionStatus.COMPLETED,
                              backend_session_id=parsed.backend_session_id, model=model,
                              release=self._lease)
        except StoreError:
            return  # the write after the exit tries again and reports the failure
        self._early = (usage, parsed.backend_session_id, model)

    def record(self, result: RunResult) -> None:
        """Record the turn as the run ended (or amend the one recorded early)."""
        store = self.engine.store
        if self.session is None or store is None or result.dry_run:
            return
        usage = result.token_usage if self.engine.config.session.store_token_usage else None
        turns = 1
        if self._early is not None:
            early_usage = self._early[0]
            if result.ok and (usage, result.backend_session_id, result.model) == self._early:
                return
            turns = 0  # amend the turn already counted
            if usage is not None and early_usage is not None:
                usage = usage.since(early_usage)
        store.record_turn(
            self.session.id,
            usage=usage,
            backend_session_id=result.backend_session_id,
            status=SessionStatus.COMPLETED if result.ok else SessionStatus.ERROR,
            error_message=result.error,
            model=result.model,
            turns=turns,
            release=self._lease,
        )
