"""The embedded store: sessions (and, through :attr:`SqliteStore.jobs`, jobs) in SQLite.

* ``record_turn`` is one ``UPDATE ... RETURNING`` with ``x = x + ?`` arithmetic, so two
  turns finishing at once both count; the returned row's ``record_json``
  (:mod:`clinvk.core.store.encoded`) is written in the same transaction, as by every write.
* ``busy()`` is a lease stored in the row itself (``lease_owner``/``lease_expires``),
  which works across processes and expires, so a crashed worker cannot lock a session
  forever; a lease whose holder is a dead process of this host is taken over at once.
* ``count()`` reads a small counter table kept exact by triggers, so ``/health`` never
  scans the sessions table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from clinvk.core.errors import InvalidRequest, NotFound, SessionBusy
from clinvk.core.events import TokenUsage
from clinvk.core.ownership import Principal
from clinvk.core.store.checks import (
    check_int,
    check_optional_str,
    check_status,
    check_tags,
    check_usage,
    dump_metadata,
)
from clinvk.core.store.drafts import new_session
from clinvk.core.store.encoded import encode_record
from clinvk.core.store.lease_owners import LIVE_OWNERS
from clinvk.core.store.records import (
    DEFAULT_LEASE_SECONDS,
    UPDATABLE_FIELDS,
    FirstTurn,
    Session,
)
from clinvk.core.store.sqlite.jobs import SqliteJobStore
from clinvk.core.store.sqlite.lease import Lease
from clinvk.core.store.sqlite.reads import SessionReads
from clinvk.core.store.sqlite.responses import SqliteResponseTable
from clinvk.core.store.sqlite.rows import (
    INSERT,
    INSERT_LEASED,
    INSERT_TAG,
    REFRESH,
    RETURNING,
    SELECTED,
    row_to_session,
    session_to_row,
)
from clinvk.core.store.sqlite.usage import SqliteUsageTable
from clinvk.core.types import SessionStatus

__all__ = ["SqliteStore"]


# One turn accounted in one statement; the lease is given back only if still the caller's.
_RECORD_TURN = f"""UPDATE sessions SET
            turn_count = turn_count + :turns,
            input_tokens = input_tokens + :inp,
            output_tokens = output_tokens + :out,
            cached_tokens = cached_tokens + :cached,
            reasoning_tokens = reasoning_tokens + :reasoning,
            cost_usd = CASE WHEN :cost IS NULL THEN cost_usd
                            ELSE COALESCE(cost_usd, 0) + :cost END,
            last_used = :now,
            backend_session_id = COALESCE(:bsid, backend_session_id),
            status = COALESCE(:status, status),
            error_message = CASE WHEN :err IS NOT NULL THEN :err
                                 WHEN :status IS NOT NULL AND :status <> 'error' THEN NULL
                                 ELSE error_message END,
            model = COALESCE(:model, model),
            lease_expires = CASE WHEN lease_owner = :owner THEN NULL
                                 ELSE lease_expires END,
            lease_owner = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_owner END
        WHERE id = :id
        RETURNING {RETURNING}"""


class SqliteStore(SessionReads):
    """SQLite-backed store, safe for many threads and processes at once."""

    _jobs: SqliteJobStore | None = None
    _responses: SqliteResponseTable | None = None
    _usage: SqliteUsageTable | None = None

    @property
    def jobs(self) -> SqliteJobStore:
        """The job tables of this same database (opened on first use)."""
        if self._jobs is None:
            self._jobs = SqliteJobStore(self.path, busy_timeout=self.busy_timeout)
        return self._jobs

    @property
    def responses(self) -> SqliteResponseTable:
        """The stored responses of this same database (opened on first use)."""
        if self._responses is None:
            self._responses = SqliteResponseTable(self)
        return self._responses

    @property
    def usage(self) -> SqliteUsageTable:
        """The usage ledger's rows in this same database (opened on first use)."""
        if self._usage is None:
            self._usage = SqliteUsageTable(self)
        return self._usage

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.close()
            self._jobs = None
        if self._responses is not None:
            self._responses.close()
            self._responses = None
        if self._usage is not None:
            self._usage.close()
            self._usage = None
        super().close()

    def create(
        self,
        *,
        backend: str,
        working_dir: str,
        model: str | None = None,
        initial_prompt: str = "",
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
        status: str = SessionStatus.ACTIVE,
        backend_session_id: str | None = None,
        lease: Lease | None = None,
        owner: str | None = None,
        first_turn: FirstTurn | None = None,
    ) -> Session:
        """Insert a new session; ``working_dir`` must already be the resolved absolute path.

        With ``lease`` (from :meth:`new_lease`) the session is inserted busy, held by that
        lease: its first turn is guarded like any other, without a second write. With
        ``first_turn`` it is inserted under that turn's id with the turn already counted.
        """
        now = self._clock()
        session = new_session(
            now, backend=backend, working_dir=working_dir, model=model,
            initial_prompt=initial_prompt, tags=tags, metadata=metadata, parent_id=parent_id,
            status=status, backend_session_id=backend_session_id, owner=owner,
            first_turn=first_turn)
        tag_list = session.tags
        row = list(session_to_row(session))
        row[3] = row[4] = now  # keep full precision, not the millisecond string
        row.append(encode_record(row))
        if lease is not None:
            if lease.held or lease._key is not None:
                raise InvalidRequest("create() needs a fresh lease from new_lease()",
                                     field="lease")
            row += [lease.owner, now + lease.ttl_seconds]
            LIVE_OWNERS.add(lease.owner)  # before the row exists (see Lease.acquire)
        try:
            self._insert(row, lease is not None, session, tag_list, now)
        except BaseException:
            if lease is not None:
                LIVE_OWNERS.discard(lease.owner)
            raise
        if lease is not None:
            lease._key = lease.session_id = session.id
            lease.expires_at = now + lease.ttl_seconds
            lease._held = True
        return session

    def _insert(self, row: list[Any], leased: bool, session: Session, tag_list: list[str],
                now: float) -> None:
        with self._guard("create a session"):
            with self._write() as conn:
                conn.execute(INSERT_LEASED if leased else INSERT, row)
                conn.executemany(
                    INSERT_TAG,
                    [(session.id, t, session.backend, session.status, now) for t in tag_list],
                )

    def _insert_many(self, sessions: Iterable[Session]) -> int:
        """Bulk insert already-built records in one transaction (benchmarks, imports)."""
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, str, str, str, float]] = []
        for session in sessions:
            row = session_to_row(session)
            rows.append((*row, encode_record(row)))
            tag_rows.extend(
                (session.id, tag, session.backend, session.status, row[4]) for tag in session.tags
            )
        with self._guard("insert sessions"):
            with self._write() as conn:
                conn.executemany(INSERT, rows)
                conn.executemany(INSERT_TAG, tag_rows)
        return len(rows)

    def record_turn(
        self,
        session_id: str,
        *,
        usage: TokenUsage | None = None,
        backend_session_id: str | None = None,
        status: str | None = None,
        error_message: str | None = None,
        model: str | None = None,
        turns: int = 1,
        release: Lease | None = None,
    ) -> Session:
        """Account one finished turn in a single UPDATE (no lost update under concurrency),
        then write the row's new ``record_json`` in the same transaction.

        Adds 1 turn and ``usage``, sets ``last_used`` to now, and overwrites
        ``backend_session_id``/``status``/``error_message``/``model`` only when given. A
        non-error ``status`` without an ``error_message`` clears the previous error (a
        completed session never shows the error of an earlier turn). ``turns=0``
        amends the last turn instead (the engine records a turn when the CLI printed its
        result and corrects it if the exit disagrees). ``release`` gives that turn's lease
        back in the same write (only if it is still that lease's).
        """
        usage = check_usage(usage)
        turns = check_int(turns, "turns", 0, 1)
        if status is not None:
            check_status(status)
        backend_session_id = check_optional_str(backend_session_id, "backend_session_id")
        error_message = check_optional_str(error_message, "error_message")
        model = check_optional_str(model, "model")
        sid = self._resolve(session_id)
        u = usage or TokenUsage()
        params = {
            "id": sid,
            "now": self._clock(),
            "inp": u.input_tokens,
            "out": u.output_tokens,
            "cached": u.cached_tokens,
            "reasoning": u.reasoning_tokens,
            "cost": u.cost_usd,
            "bsid": backend_session_id,
            "status": status,
            "err": error_message,
            "model": model,
            "turns": turns,
            "owner": release.owner if release is not None and release.held else None,
        }
        with self._guard("record a turn"):
            with self._write() as conn:
                rows = conn.execute(_RECORD_TURN, params).fetchall()
                if rows:
                    conn.execute(REFRESH, (encode_record(rows[0]), sid))
        if not rows:
            raise NotFound(f"session not found: {sid}", field="session_id")
        if params["owner"] is not None and release is not None:
            release._held = False
            LIVE_OWNERS.discard(release.owner)
        return row_to_session(rows[0])

    def update(self, session_id: str, **fields: Any) -> Session:
        """Edit ``status``, ``tags`` (replaced), ``metadata`` (replaced), ``title`` or
        ``error_message``. Does not touch ``last_used``: editing is not using."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"cannot update {', '.join(unknown)}: updatable fields are "
                f"{', '.join(sorted(UPDATABLE_FIELDS))}",
                field=unknown[0],
            )
        sets: list[str] = []
        params: list[Any] = []
        tag_list: list[str] | None = None
        if "status" in fields:
            sets.append("status = ?")
            params.append(check_status(fields["status"]))
        if "tags" in fields:
            tag_list = check_tags(fields["tags"])
            sets.append("tags = ?")
            params.append(json.dumps(tag_list, ensure_ascii=False))
        if "metadata" in fields:
            sets.append("metadata = ?")
            params.append(dump_metadata(fields["metadata"]))
        if "title" in fields:
            title = fields["title"]
            if title is None:
                title = ""
            if not isinstance(title, str):
                raise InvalidRequest("title must be a string", field="title")
            title = " ".join(title.split())
            if len(title) > 200:
                raise InvalidRequest("title must be at most 200 characters", field="title")
            sets.append("title = ?")
            params.append(title)
        if "error_message" in fields:
            sets.append("error_message = ?")
            params.append(check_optional_str(fields["error_message"], "error_message"))
        sid = self._resolve(session_id)
        with self._guard("update a session"):
            if not sets:
                return self._fetch(sid)
            with self._write() as conn:
                cur = conn.execute(
                    f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?", (*params, sid)
                )
                if cur.rowcount != 1:
                    raise NotFound(f"session not found: {sid}", field="session_id")
                row = self._fetch_row(sid, conn)
                conn.execute(REFRESH, (encode_record(row), sid))
                session = row_to_session(row)
                if tag_list is not None:
                    row = conn.execute(
                        "SELECT backend, status, last_used FROM sessions WHERE id = ?", (sid,)
                    ).fetchone()
                    conn.execute("DELETE FROM session_tags WHERE session_id = ?", (sid,))
                    conn.executemany(INSERT_TAG, [(sid, t, *row) for t in tag_list])
            return session

    def delete(self, id_or_prefix: str, *, force: bool = False,
               visible_to: Principal | None = None) -> Session:
        """Delete one session and return it. A session with a running turn (live lease)
        is refused with ``SessionBusy`` unless ``force``; one that ``visible_to`` may not
        see is ``NotFound``."""
        sid = self.get(id_or_prefix, visible_to=visible_to).id if visible_to is not None \
            else self._resolve(id_or_prefix)
        now = self._clock()
        with self._guard("delete a session"):
            with self._write() as conn:
                rows = conn.execute(
                    f"DELETE FROM sessions WHERE id = ? AND "
                    f"(? OR lease_owner IS NULL OR lease_expires < ?) RETURNING {RETURNING}",
                    (sid, bool(force), now),
                ).fetchall()
                exists = (
                    bool(rows)
                    or conn.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone()
                    is not None
                )
        if rows:
            return row_to_session(rows[0])
        if exists:
            raise SessionBusy(f"session {sid} is busy: another turn is running")
        raise NotFound(f"session not found: {sid}", field="session_id")

    def cleanup(self, *, older_than_seconds: float, dry_run: bool = False) -> list[Session]:
        """Delete (or with ``dry_run`` just list) sessions unused for longer than the age.

        The age must be > 0, so a mistyped "0 days" can never delete everything;
        callers map "keep forever" to not calling this. Sessions with a running turn are
        kept. Returned most recently used first.
        """
        age = older_than_seconds
        if (
            isinstance(age, bool)
            or not isinstance(age, int | float)
            or not (math.isfinite(age) and age > 0)
        ):
            raise InvalidRequest(
                f"older_than_seconds must be a positive number, got {age!r}",
                field="older_than_seconds",
            )
        now = self._clock()
        cutoff = now - float(age)
        condition = "last_used < ? AND (lease_owner IS NULL OR lease_expires < ?)"
        with self._guard("clean up sessions"):
            if dry_run:
                rows = self._conn().execute(
                    f"SELECT {SELECTED} FROM sessions AS s WHERE {condition} "
                    "ORDER BY last_used DESC, id DESC",
                    (cutoff, now),
                ).fetchall()
            else:
                with self._write() as conn:
                    rows = conn.execute(
                        f"DELETE FROM sessions WHERE {condition} RETURNING {RETURNING}",
                        (cutoff, now),
                    ).fetchall()
        sessions = [row_to_session(r) for r in rows]
        if not dry_run:
            order = {r[0]: (r[4], r[0]) for r in rows}
            sessions.sort(key=lambda s: order[s.id], reverse=True)
        return sessions

    def busy(self, session_id: str, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS) -> Lease:
        """Context manager that holds the "a turn is running" lease for one session.

        ``with store.busy(sid) as lease:`` raises ``SessionBusy`` if another thread or
        process holds a live lease, releases on exit (also on exceptions), and expires
        after ``ttl_seconds`` if the holder dies; call ``lease.renew()`` for longer turns.
        Not re-entrant: a second claim from the same thread is refused too.
        """
        return Lease(self, session_id, ttl_seconds)

    def new_lease(self, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS) -> Lease:
        """A lease for a session about to be created busy: ``create(..., lease=lease)``."""
        return Lease(self, None, ttl_seconds)
