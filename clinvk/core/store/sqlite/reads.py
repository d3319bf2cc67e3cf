"""Reading sessions from SQLite: lookups by id or prefix, keyset pages, counts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from clinvk.core.errors import AmbiguousPrefix, NotFound
from clinvk.core.ownership import Principal
from clinvk.core.store.checks import check_int, check_status, normalize_id, owner_filter
from clinvk.core.store.cursor import decode_cursor, encode_cursor
from clinvk.core.store.listing import Listings, Page
from clinvk.core.store.records import (
    MAX_LIST_LIMIT,
    Session,
)
from clinvk.core.store.sqlite.database import SqliteDatabase
from clinvk.core.store.sqlite.rows import SELECTED, row_to_session


@dataclass
class _ListQuery:
    """The FROM, ORDER BY and filters of one session listing, chosen for the index that
    yields its rows already in page order."""

    source: str
    order: str
    alias: str
    owner: str | None
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    @classmethod
    def build(cls, backend: str | None, status: str | None, tag: str | None,
              working_dir: str | None, owner: str | None) -> _ListQuery:
        if tag and not working_dir:
            # session_tags is the outer loop (the planner picks it unaided): its (tag[,
            # backend][, status], last_used) indexes yield rows already in page order.
            query = cls("session_tags AS t JOIN sessions AS s ON s.id = t.session_id",
                        "t.last_used DESC, t.session_id DESC", "t", owner)
            query.add("t.tag = ?", tag)
        else:
            # A working_dir narrows to one project's sessions: walk its index and check
            # the tag per row (a primary-key probe) rather than walk every tagged session.
            query = cls("sessions AS s", "s.last_used DESC, s.id DESC", "s", owner)
            if working_dir:
                # Unpinned, backend+status picks their index: 20x slower (docs/performance.md).
                query.source += " INDEXED BY sessions_by_working_dir"
                query.add("s.working_dir = ?", working_dir)
            if tag:
                query.add("EXISTS (SELECT 1 FROM session_tags AS t "
                          "WHERE t.session_id = s.id AND t.tag = ?)", tag)
        for column, value in (("backend", backend), ("status", status)):
            if value:
                query.add(f"{query.alias}.{column} = ?", value)
        if owner is not None:
            if not working_dir and not tag:
                # Pinned for the same reason as the working_dir index above.
                query.source = "sessions AS s INDEXED BY sessions_by_owner"
            query.add("s.owner = ?", owner)
        return query

    def add(self, condition: str, value: Any) -> None:
        self.where.append(condition)
        self.params.append(value)


__all__ = ["SessionReads"]

_AMBIGUOUS_SHOWN = 5


class SessionReads(Listings, SqliteDatabase):
    """The read half of the SQLite session store."""

    def _resolve(self, id_or_prefix: str) -> str:
        """Full id for a full id or unique prefix (a full id skips the lookup)."""
        key = normalize_id(id_or_prefix)
        if len(key) == 32:
            return key
        return self.get(key).id

    def _fetch_row(self, session_id: str, conn: sqlite3.Connection | None = None
                   ) -> tuple[Any, ...]:
        """The row of ``session_id``, read on ``conn`` (inside a write: its connection)."""
        row = (
            (conn or self._conn())
            .execute(f"SELECT {SELECTED} FROM sessions AS s WHERE s.id = ?", (session_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"session not found: {session_id}", field="session_id")
        return tuple(row)

    def _fetch(self, session_id: str) -> Session:
        return row_to_session(self._fetch_row(session_id))

    # -- create / read ----------------------------------------------------------------
    def get(self, id_or_prefix: str, *, visible_to: Principal | None = None) -> Session:
        """Look a session up by full id or a unique prefix of at least 4 hex characters.

        With ``visible_to``, a session that caller may not see does not exist for it (the
        same ``NotFound``; prefixes only match the caller's own sessions).
        """
        key = normalize_id(id_or_prefix)
        owner = owner_filter(visible_to)
        with self._guard("read a session"):
            if len(key) == 32:
                session = self._fetch(key)
                if owner is not None and session.owner != owner:
                    raise NotFound(f"session not found: {key}", field="session_id")
                return session
            # Range scan on the primary key; 'g' sorts right after 'f'.
            mine = "" if owner is None else " AND s.owner = ?"
            rows = (
                self._conn()
                .execute(
                    f"SELECT {SELECTED} FROM sessions AS s WHERE s.id >= ? AND s.id < ?{mine} "
                    "ORDER BY s.id LIMIT ?",
                    (key, key + "g", *(() if owner is None else (owner,)),
                     _AMBIGUOUS_SHOWN + 1),
                )
                .fetchall()
            )
        if not rows:
            raise NotFound(f"no session found with id or prefix {key!r}", field="session_id")
        if len(rows) > 1:
            candidates = [r[0] for r in rows[:_AMBIGUOUS_SHOWN]]
            count = f"more than {_AMBIGUOUS_SHOWN}" if len(rows) > _AMBIGUOUS_SHOWN else len(rows)
            raise AmbiguousPrefix(
                f"ambiguous session prefix {key!r}: matches {count} sessions "
                f"({', '.join(candidates)}{', ...' if len(rows) > _AMBIGUOUS_SHOWN else ''}); "
                "use more characters",
                field="session_id",
                details={"candidates": candidates},
            )
        return row_to_session(rows[0])

    def _page(
        self, selected: str, key: tuple[int, int], *, backend: str | None,
        status: str | None, tag: str | None, working_dir: str | None, limit: int,
        offset: int, visible_to: Principal | None, cursor: str | None,
    ) -> Page:
        limit = check_int(limit, "limit", 1, MAX_LIST_LIMIT)
        offset = check_int(offset, "offset", 0)
        after = decode_cursor(cursor, (float, str)) if cursor else None
        if status:
            check_status(status)
        query = _ListQuery.build(backend, status, tag, working_dir, owner_filter(visible_to))
        source, order, where, params = query.source, query.order, query.where, query.params
        filtered = list(params)  # the count ignores the page position
        count_clause = f" WHERE {' AND '.join(where)}" if where else ""
        if after is not None:
            # Row values compare like the ORDER BY, so the index range starts at the cursor.
            key_id = "t.session_id" if query.alias == "t" else "s.id"
            where.append(f"({query.alias}.last_used, {key_id}) < (?, ?)")
            params.extend(after)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        counted = not working_dir and query.owner is None  # the trigger-kept counters apply
        with self._guard("list sessions"):
            conn = self._conn()
            with self._snapshot(conn):
                rows = conn.execute(
                    f"SELECT {selected} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                    (*params, limit, offset),
                ).fetchall()
                if counted:
                    total = self._count(conn, backend=backend, status=status, tag=tag)
                elif offset == 0 and after is None and len(rows) < limit:
                    total = len(rows)
                else:  # O(sessions in that directory / of that owner), via their index
                    total = conn.execute(
                        f"SELECT COUNT(*) FROM {source}{count_clause}", filtered
                    ).fetchone()[0]
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = encode_cursor((last[key[0]], last[key[1]]))
        return rows, total, limit, offset, next_cursor

    def latest(
        self,
        *,
        backend: str | None = None,
        working_dir: str | None = None,
        resumable: bool = False,
        visible_to: Principal | None = None,
    ) -> Session | None:
        """Most recently used session matching the filters (for ``resume --last``).

        ``resumable=True`` skips sessions whose backend never reported its own id.
        """
        where: list[str] = []
        params: list[Any] = []
        if backend:
            where.append("s.backend = ?")
            params.append(backend)
        if working_dir:
            where.append("s.working_dir = ?")
            params.append(working_dir)
        if resumable:
            where.append("s.backend_session_id IS NOT NULL")
        owner = owner_filter(visible_to)
        if owner is not None:
            where.append("s.owner = ?")
            params.append(owner)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._guard("read the latest session"):
            row = (
                self._conn()
                .execute(
                    f"SELECT {SELECTED} FROM sessions AS s{clause} "
                    "ORDER BY s.last_used DESC, s.id DESC LIMIT 1",
                    params,
                )
                .fetchone()
            )
        return row_to_session(row) if row else None

    def count(
        self, *, backend: str | None = None, status: str | None = None, tag: str | None = None,
        visible_to: Principal | None = None,
    ) -> int:
        """Number of sessions, from the trigger-maintained counters (no table scan); with
        ``visible_to`` restricted to one owner, a count over that owner's index."""
        if status:
            check_status(status)
        owner = owner_filter(visible_to)
        if owner is not None:
            return self.list(backend=backend, status=status, tag=tag, limit=1,
                             visible_to=visible_to).total
        with self._guard("count sessions"):
            return self._count(self._conn(), backend=backend, status=status, tag=tag)

    @staticmethod
    def _count(
        conn: sqlite3.Connection,
        *,
        backend: str | None,
        status: str | None,
        tag: str | None = None,
    ) -> int:
        where: list[str] = []
        params: list[Any] = []
        table = "session_counts"
        if tag:
            table = "tag_counts"
            where.append("tag = ?")
            params.append(tag)
        if backend:
            where.append("backend = ?")
            params.append(backend)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table}{clause}", params).fetchone()[
            0
        ]

    # -- mutate -----------------------------------------------------------------------
