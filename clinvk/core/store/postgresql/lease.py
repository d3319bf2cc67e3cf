"""The "a turn is running" lease of one session, stored in its PostgreSQL row.

The contract is the SQLite lease's: a claim with one conditional UPDATE, an expiry that
frees the session of a crashed holder, ``renew`` for long turns, and a holder that is a
dead process of this same node taken over at once. Holders on other hosts are judged by
the expiry only (their pids mean nothing here).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from clinvk.core.errors import InvalidRequest, NotFound, SessionBusy, StoreError
from clinvk.core.events import utc_timestamp
from clinvk.core.store.checks import check_ttl
from clinvk.core.store.lease_owners import LIVE_OWNERS, holder_is_dead, new_owner

if TYPE_CHECKING:
    from clinvk.core.store.postgresql.sessions import PostgresStore

__all__ = ["PostgresLease"]

_CLAIM = ("UPDATE sessions SET lease_owner = %s, lease_expires = %s "
          "WHERE id = %s AND (lease_owner IS NULL OR lease_expires < %s)")
_TAKE_OVER = ("UPDATE sessions SET lease_owner = %s, lease_expires = %s "
              "WHERE id = %s AND lease_owner = %s")


class PostgresLease:
    """A claim that one turn of a session is running (``PostgresStore.busy``)."""

    def __init__(self, store: PostgresStore, id_or_prefix: str | None, ttl_seconds: float
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

    def taken(self, session_id: str, expires_at: float) -> None:
        """``create(lease=self)`` inserted the session held by this lease."""
        self._key = self.session_id = session_id
        self.expires_at = expires_at
        self._held = True

    def given_back(self) -> None:
        """``record_turn(release=self)`` cleared the lease in the same write."""
        self._held = False
        LIVE_OWNERS.discard(self.owner)

    def acquire(self) -> PostgresLease:
        """Claim the session, or raise ``SessionBusy``."""
        if self._held:
            raise SessionBusy(f"session {self.session_id} is busy: another turn is running")
        if self._key is None:
            raise InvalidRequest("this lease is taken by create(lease=...)", field="session_id")
        # Listed as live before the claim is written: no other thread of this process may
        # see the claim in the database and take it for abandoned.
        LIVE_OWNERS.add(self.owner)
        try:
            return self._acquire(self._key)
        except BaseException:
            LIVE_OWNERS.discard(self.owner)
            raise

    def _acquire(self, key: str) -> PostgresLease:
        store = self._store
        sid = self.session_id = store._resolve(key)
        now = store._clock()
        expires = now + self.ttl_seconds

        def claim(conn: Any) -> tuple[bool, Any]:
            if conn.execute(_CLAIM, (self.owner, expires, sid, now)).rowcount == 1:
                return True, None
            row = conn.execute("SELECT lease_expires, lease_owner FROM sessions WHERE id = %s",
                               (sid,)).fetchone()
            if row is not None and row[1] and holder_is_dead(row[1]):
                # The holder died mid-turn: take over its lease (only if still that
                # holder's, so two claimants cannot both win).
                won = conn.execute(_TAKE_OVER, (self.owner, expires, sid, row[1])).rowcount
                return won == 1, row
            return False, row

        claimed, row = store.run("claim the session", claim)
        if not claimed:
            if row is None:
                raise NotFound(f"session not found: {sid}", field="session_id")
            raise SessionBusy(
                f"session {sid} is busy: another turn is running",
                details={"session_id": sid,
                         "lease_expires": utc_timestamp(row[0]) if row[0] is not None
                         else None})
        self.expires_at = expires
        self._held = True
        return self

    def renew(self, ttl_seconds: float | None = None) -> None:
        """Push the expiry out again; ``SessionBusy`` if the lease was lost meanwhile."""
        if not self._held:
            raise SessionBusy(f"lease on session {self.session_id} is not held")
        ttl = self.ttl_seconds if ttl_seconds is None else check_ttl(ttl_seconds)
        expires = self._store._clock() + ttl
        count = self._store.run("renew the session lease", lambda conn: conn.execute(
            "UPDATE sessions SET lease_expires = %s WHERE id = %s AND lease_owner = %s",
            (expires, self.session_id, self.owner)).rowcount)
        if count != 1:
            self.given_back()
            raise SessionBusy(
                f"session {self.session_id} is busy: the lease expired and another turn took it")
        self.expires_at = expires

    def release(self) -> None:
        """Drop the claim (idempotent); never touches a lease someone else took over."""
        if not self._held:
            return
        self.given_back()  # given up even if the write below fails
        self._store.run("release the session lease", lambda conn: conn.execute(
            "UPDATE sessions SET lease_owner = NULL, lease_expires = NULL "
            "WHERE id = %s AND lease_owner = %s", (self.session_id, self.owner)))

    def __enter__(self) -> PostgresLease:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.release()
        except StoreError:
            if exc_type is None:  # never mask the turn's own exception; the lease expires
                raise
