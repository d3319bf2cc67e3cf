"""The "a turn is running" lease of one session, stored in its SQLite row."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from clinvk.core.errors import InvalidRequest, NotFound, SessionBusy, StoreError
from clinvk.core.events import utc_timestamp
from clinvk.core.store.checks import check_ttl
from clinvk.core.store.lease_owners import LIVE_OWNERS, holder_is_dead, new_owner

if TYPE_CHECKING:
    from clinvk.core.store.sqlite.sessions import SqliteStore

__all__ = ["Lease"]


class Lease:
    """A claim that one turn of a session is running (``SqliteStore.busy``).

    The claim lives in the session row, so it excludes other threads *and* other processes.
    It expires after ``ttl_seconds`` so a crashed holder cannot lock the session forever;
    a long turn calls :meth:`renew` to keep it. A lease held by a process of this host
    that no longer exists (a ``kill -9``-ed gunicorn worker or CLI) is taken over at once
    instead of blocking the session until it expires.
    """

    def __init__(self, store: SqliteStore, id_or_prefix: str | None, ttl_seconds: float
                 ) -> None:
        # ``id_or_prefix=None``: a lease for a session that ``create(lease=...)`` inserts.
        self._store = store
        self._key = id_or_prefix
        self.ttl_seconds = check_ttl(ttl_seconds)
        self.session_id: str | None = None
        self.owner = new_owner()
        self.expires_at: float | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> Lease:
        """Claim the session with one conditional UPDATE, or raise ``SessionBusy``."""
        # Listed as live before the claim is written, so that no other thread of this
        # process can see the claim in the database and take it for abandoned.
        LIVE_OWNERS.add(self.owner)
        try:
            return self._acquire()
        except BaseException:
            LIVE_OWNERS.discard(self.owner)
            raise

    def _acquire(self) -> Lease:
        if self._held:
            raise SessionBusy(f"session {self.session_id} is busy: another turn is running")
        if self._key is None:
            raise InvalidRequest("this lease is taken by create(lease=...)", field="session_id")
        store = self._store
        self.session_id = store._resolve(self._key)
        now = store._clock()
        expires = now + self.ttl_seconds
        row = None
        with store._guard("claim the session"), store._write_lock:
            conn = store._writer_conn()
            cur = conn.execute(
                "UPDATE sessions SET lease_owner = ?, lease_expires = ? "
                "WHERE id = ? AND (lease_owner IS NULL OR lease_expires < ?)",
                (self.owner, expires, self.session_id, now),
            )
            claimed = cur.rowcount == 1
            if not claimed:
                row = conn.execute(
                    "SELECT lease_expires, lease_owner FROM sessions WHERE id = ?",
                    (self.session_id,),
                ).fetchone()
                if row is not None and row[1] and holder_is_dead(row[1]):
                    # The holder died mid-turn: take its lease over (only if it is still
                    # that holder's, so two claimants cannot both win).
                    cur = conn.execute(
                        "UPDATE sessions SET lease_owner = ?, lease_expires = ? "
                        "WHERE id = ? AND lease_owner = ?",
                        (self.owner, expires, self.session_id, row[1]),
                    )
                    claimed = cur.rowcount == 1
        if not claimed:
            if row is None:
                raise NotFound(f"session not found: {self.session_id}", field="session_id")
            raise SessionBusy(
                f"session {self.session_id} is busy: another turn is running",
                details={
                    "session_id": self.session_id,
                    "lease_expires": utc_timestamp(row[0]) if row[0] is not None else None,
                },
            )
        self.expires_at = expires
        self._held = True
        return self

    def renew(self, ttl_seconds: float | None = None) -> None:
        """Push the expiry out again; raise ``SessionBusy`` if the lease was lost meanwhile."""
        if not self._held:
            raise SessionBusy(f"lease on session {self.session_id} is not held")
        ttl = self.ttl_seconds if ttl_seconds is None else check_ttl(ttl_seconds)
        expires = self._store._clock() + ttl
        with self._store._guard("renew the session lease"), self._store._write_lock:
            cur = self._store._writer_conn().execute(
                "UPDATE sessions SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                (expires, self.session_id, self.owner),
            )
        if cur.rowcount != 1:
            self._held = False
            LIVE_OWNERS.discard(self.owner)
            raise SessionBusy(
                f"session {self.session_id} is busy: the lease expired and another turn took it"
            )
        self.expires_at = expires

    def release(self) -> None:
        """Drop the claim (idempotent); never touches a lease someone else took over."""
        if not self._held:
            return
        self._held = False
        LIVE_OWNERS.discard(self.owner)  # given up even if the write below fails
        with self._store._guard("release the session lease"), self._store._write_lock:
            self._store._writer_conn().execute(
                "UPDATE sessions SET lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (self.session_id, self.owner),
            )

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except StoreError:
            # Don't mask the turn's own exception with a release failure; the lease
            # expires on its own.
            if exc_type is None:
                raise
