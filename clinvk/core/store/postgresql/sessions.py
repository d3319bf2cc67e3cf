"""The shared store: sessions (and, through :attr:`PostgresStore.jobs`, jobs) in PostgreSQL.

The same behaviour as the embedded SQLite store, for several gateways and hosts at once:

* ``record_turn`` is one ``UPDATE ... RETURNING`` with ``x = x + n`` arithmetic, so two
  turns finishing at once both count (the row's ``record_json`` follows in the same
  transaction, as with every write);
* ``busy()`` is the lease in the session row (``lease_owner``/``lease_expires``), claimed
  with a conditional UPDATE: it excludes other threads, processes and hosts, and expires;
* ``count()`` reads the counter tables that triggers keep exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clinvk.core.errors import InvalidRequest, NotFound, SessionBusy
from clinvk.core.events import TokenUsage
from clinvk.core.ownership import Principal
from clinvk.core.store.checks import check_int, check_optional_str, check_status, check_usage
from clinvk.core.store.drafts import check_age, new_session, update_columns
from clinvk.core.store.encoded import encode_record
from clinvk.core.store.lease_owners import LIVE_OWNERS
from clinvk.core.store.postgresql.jobs import PostgresJobTable
from clinvk.core.store.postgresql.lease import PostgresLease
from clinvk.core.store.postgresql.reads import SELECTED, SessionReads
from clinvk.core.store.postgresql.responses import PostgresResponseTable
from clinvk.core.store.postgresql.usage import PostgresUsageTable
from clinvk.core.store.records import DEFAULT_LEASE_SECONDS, FirstTurn, Session
from clinvk.core.store.rows import COLUMNS, row_to_session, session_to_row

__all__ = ["PostgresStore"]

_RETURNING = ", ".join(COLUMNS)
# A row is COLUMNS, its record_json (clinvk.core.store.encoded), then its lease.
_INSERT = ("INSERT INTO sessions ({}, record_json, lease_owner, lease_expires) "
           "VALUES ({})").format(", ".join(COLUMNS),
                                 ", ".join("%s" for _ in range(len(COLUMNS) + 3)))
# After a statement that changed a row's columns: its record_json from the row as returned.
_REFRESH = "UPDATE sessions SET record_json = %s WHERE id = %s"
_INSERT_TAG = ("INSERT INTO session_tags (session_id, tag, backend, status, last_used) "
               "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
# Casts: a NULL parameter has no type of its own for PostgreSQL to infer.
_RECORD_TURN = f"""UPDATE sessions SET
        turn_count = turn_count + %(turns)s,
        input_tokens = input_tokens + %(inp)s,
        output_tokens = output_tokens + %(out)s,
        cached_tokens = cached_tokens + %(cached)s,
        reasoning_tokens = reasoning_tokens + %(reasoning)s,
        cost_usd = CASE WHEN %(cost)s::float8 IS NULL THEN cost_usd
                        ELSE COALESCE(cost_usd, 0) + %(cost)s::float8 END,
        last_used = %(now)s,
        backend_session_id = COALESCE(%(bsid)s::text, backend_session_id),
        status = COALESCE(%(status)s::text, status),
        error_message = CASE WHEN %(err)s::text IS NOT NULL THEN %(err)s::text
                             WHEN %(status)s::text IS NOT NULL
                                  AND %(status)s::text <> 'error' THEN NULL
                             ELSE error_message END,
        model = COALESCE(%(model)s::text, model),
        lease_expires = CASE WHEN lease_owner = %(owner)s::text THEN NULL
                             ELSE lease_expires END,
        lease_owner = CASE WHEN lease_owner = %(owner)s::text THEN NULL ELSE lease_owner END
    WHERE id = %(id)s
    RETURNING {_RETURNING}"""


def _tag_rows(session: Session, last_used: float) -> list[tuple[Any, ...]]:
    # Sorted: concurrent writers lock the tag counter rows in one order (no deadlock).
    return [(session.id, tag, session.backend, session.status, last_used)
            for tag in sorted(session.tags)]


class PostgresStore(SessionReads):
    """PostgreSQL-backed store, safe for many threads, processes and hosts at once."""

    _jobs: PostgresJobTable | None = None
    _responses: PostgresResponseTable | None = None
    _usage: PostgresUsageTable | None = None

    @property
    def jobs(self) -> PostgresJobTable:
        """The job tables of this same database (over the same pool)."""
        if self._jobs is None:
            self._jobs = PostgresJobTable(self)
        return self._jobs

    @property
    def responses(self) -> PostgresResponseTable:
        """The stored responses of this same database (over the same pool)."""
        if self._responses is None:
            self._responses = PostgresResponseTable(self)
        return self._responses

    @property
    def usage(self) -> PostgresUsageTable:
        """The usage ledger's rows in this same database (over the same pool)."""
        if self._usage is None:
            self._usage = PostgresUsageTable(self)
        return self._usage

    def create(self, *, backend: str, working_dir: str, model: str | None = None,
               initial_prompt: str = "", tags: Iterable[str] = (),
               metadata: dict[str, Any] | None = None, parent_id: str | None = None,
               status: str = "active", backend_session_id: str | None = None,
               lease: PostgresLease | None = None, owner: str | None = None,
               first_turn: FirstTurn | None = None) -> Session:
        """Insert a new session (``working_dir`` already resolved and absolute); with
        ``lease`` (from :meth:`new_lease`) it is born busy, held by that lease; with
        ``first_turn``, under that turn's id with the turn already counted."""
        now = self._clock()
        session = new_session(
            now, backend=backend, working_dir=working_dir, model=model,
            initial_prompt=initial_prompt, tags=tags, metadata=metadata, parent_id=parent_id,
            status=status, backend_session_id=backend_session_id, owner=owner,
            first_turn=first_turn)
        row = list(session_to_row(session))
        row[3] = row[4] = now  # full precision, not the millisecond string
        row.append(encode_record(row))
        if lease is not None:
            if lease.held or lease.session_id is not None:
                raise InvalidRequest("create() needs a fresh lease from new_lease()",
                                     field="lease")
            row += [lease.owner, now + lease.ttl_seconds]
            LIVE_OWNERS.add(lease.owner)  # before the row exists (see PostgresLease)
        else:
            row += [None, None]

        def insert(conn: Any) -> None:
            conn.execute(_INSERT, row)
            with conn.cursor() as cur:
                cur.executemany(_INSERT_TAG, _tag_rows(session, now))

        try:
            self.run("create a session", insert)
        except BaseException:
            if lease is not None:
                LIVE_OWNERS.discard(lease.owner)
            raise
        if lease is not None:
            lease.taken(session.id, now + lease.ttl_seconds)
        return session

    def _insert_many(self, sessions: Iterable[Session]) -> int:
        """Bulk insert already-built records in one transaction (benchmarks, imports)."""
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[Any, ...]] = []
        for session in sessions:
            row = session_to_row(session)
            rows.append((*row, encode_record(row), None, None))
            tag_rows.extend(_tag_rows(session, row[4]))

        def insert(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, rows)
                cur.executemany(_INSERT_TAG, tag_rows)

        self.run("insert sessions", insert)
        return len(rows)

    def record_turn(self, session_id: str, *, usage: TokenUsage | None = None,
                    backend_session_id: str | None = None, status: str | None = None,
                    error_message: str | None = None, model: str | None = None,
                    turns: int = 1, release: PostgresLease | None = None) -> Session:
        """Account one finished turn in a single UPDATE (see the SQLite store for the
        meaning of each argument: the behaviour is the same)."""
        usage = check_usage(usage) or TokenUsage()
        turns = check_int(turns, "turns", 0, 1)
        if status is not None:
            check_status(status)
        sid = self._resolve(session_id)
        owner = release.owner if release is not None and release.held else None
        params = {
            "id": sid, "now": self._clock(), "turns": turns,
            "inp": usage.input_tokens, "out": usage.output_tokens,
            "cached": usage.cached_tokens, "reasoning": usage.reasoning_tokens,
            "cost": usage.cost_usd,
            "bsid": check_optional_str(backend_session_id, "backend_session_id"),
            "status": status, "err": check_optional_str(error_message, "error_message"),
            "model": check_optional_str(model, "model"), "owner": owner,
        }

        def account(conn: Any) -> Any:
            row = conn.execute(_RECORD_TURN, params).fetchone()
            if row is not None:
                conn.execute(_REFRESH, (encode_record(row), sid))
            return row

        row = self.run("record a turn", account)
        if row is None:
            raise NotFound(f"session not found: {sid}", field="session_id")
        if owner is not None and release is not None:
            release.given_back()
        return row_to_session(row)

    def update(self, session_id: str, **fields: Any) -> Session:
        """Edit ``status``, ``tags`` (replaced), ``metadata`` (replaced), ``title`` or
        ``error_message``; ``last_used`` stays (editing is not using)."""
        columns, tag_list = update_columns(fields)
        sid = self._resolve(session_id)

        def edit(conn: Any) -> Session:
            if not columns:
                return self._fetch(conn, sid)
            sets = ", ".join(f"{name} = %s" for name in columns)
            row = conn.execute(
                f"UPDATE sessions SET {sets} WHERE id = %s RETURNING backend, status, "
                "last_used", (*columns.values(), sid)).fetchone()
            if row is None:
                raise NotFound(f"session not found: {sid}", field="session_id")
            if tag_list is not None:
                conn.execute("DELETE FROM session_tags WHERE session_id = %s", (sid,))
                with conn.cursor() as cur:
                    cur.executemany(_INSERT_TAG, [(sid, t, *row) for t in sorted(tag_list)])
            edited = self._fetch_row(conn, sid)
            conn.execute(_REFRESH, (encode_record(edited), sid))
            return row_to_session(edited)

        return self.run("update a session", edit)

    def delete(self, id_or_prefix: str, *, force: bool = False,
               visible_to: Principal | None = None) -> Session:
        """Delete one session and return it; a running turn (live lease) refuses with
        ``SessionBusy`` unless ``force``; one ``visible_to`` may not see is ``NotFound``."""
        sid = self.get(id_or_prefix, visible_to=visible_to).id if visible_to is not None \
            else self._resolve(id_or_prefix)
        now = self._clock()

        def remove(conn: Any) -> tuple[Any, bool]:
            row = conn.execute(
                f"DELETE FROM sessions WHERE id = %s AND (%s OR lease_owner IS NULL "
                f"OR lease_expires < %s) RETURNING {_RETURNING}",
                (sid, bool(force), now)).fetchone()
            exists = row is not None or conn.execute(
                "SELECT 1 FROM sessions WHERE id = %s", (sid,)).fetchone() is not None
            return row, exists

        row, exists = self.run("delete a session", remove)
        if row is not None:
            return row_to_session(row)
        if exists:
            raise SessionBusy(f"session {sid} is busy: another turn is running")
        raise NotFound(f"session not found: {sid}", field="session_id")

    def cleanup(self, *, older_than_seconds: float, dry_run: bool = False) -> list[Session]:
        """Delete (or with ``dry_run`` list) sessions unused for longer than the age,
        keeping those with a running turn; most recently used first."""
        now = self._clock()
        cutoff = now - check_age(older_than_seconds)
        condition = "last_used < %s AND (lease_owner IS NULL OR lease_expires < %s)"
        if dry_run:
            sql = (f"SELECT {SELECTED} FROM sessions AS s WHERE {condition} "
                   "ORDER BY last_used DESC, id DESC")
        else:
            sql = f"DELETE FROM sessions WHERE {condition} RETURNING {_RETURNING}"
        rows = self.run("clean up sessions",
                        lambda conn: conn.execute(sql, (cutoff, now)).fetchall())
        last_used = COLUMNS.index("last_used")
        rows.sort(key=lambda r: (r[last_used], r[0]), reverse=True)
        return [row_to_session(r) for r in rows]

    def busy(self, session_id: str, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS
             ) -> PostgresLease:
        """The "a turn is running" lease of one session (a context manager; see the SQLite
        store's ``busy`` for the contract, which is the same)."""
        return PostgresLease(self, session_id, ttl_seconds)

    def new_lease(self, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS) -> PostgresLease:
        """A lease for a session about to be created busy: ``create(..., lease=lease)``."""
        return PostgresLease(self, None, ttl_seconds)

