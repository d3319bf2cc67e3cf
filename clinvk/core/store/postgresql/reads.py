"""Reading sessions from PostgreSQL: lookups by id or prefix, keyset pages, counts."""

from __future__ import annotations

from typing import Any

from clinvk.core.errors import AmbiguousPrefix, NotFound
from clinvk.core.ownership import Principal
from clinvk.core.store.checks import check_int, check_status, normalize_id, owner_filter
from clinvk.core.store.cursor import decode_cursor, encode_cursor
from clinvk.core.store.listing import SELECTED, Listings, Page
from clinvk.core.store.postgresql.database import PostgresDatabase
from clinvk.core.store.records import (
    MAX_LIST_LIMIT,
    Session,
)
from clinvk.core.store.rows import row_to_session

__all__ = ["SELECTED", "SessionReads", "count_sessions"]

_AMBIGUOUS_SHOWN = 5


def count_sessions(conn: Any, *, backend: str | None, status: str | None,
                   tag: str | None = None) -> int:
    """An exact count from the trigger-kept counter tables (a few rows, never a scan)."""
    where: list[str] = []
    params: list[Any] = []
    table = "session_counts"
    if tag:
        table = "tag_counts"
        where.append("tag = %s")
        params.append(tag)
    for column, value in (("backend", backend), ("status", status)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    row = conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table}{clause}", params).fetchone()
    return int(row[0])


class SessionReads(Listings, PostgresDatabase):
    """The read half of the PostgreSQL session store."""

    def _resolve(self, id_or_prefix: str) -> str:
        """Full id for a full id or unique prefix (a full id skips the lookup)."""
        key = normalize_id(id_or_prefix)
        if len(key) == 32:
            return key
        return self.get(key).id

    def _fetch_row(self, conn: Any, session_id: str) -> tuple[Any, ...]:
        row = conn.execute(f"SELECT {SELECTED} FROM sessions AS s WHERE s.id = %s",
                           (session_id,)).fetchone()
        if row is None:
            raise NotFound(f"session not found: {session_id}", field="session_id")
        return tuple(row)

    def _fetch(self, conn: Any, session_id: str) -> Session:
        return row_to_session(self._fetch_row(conn, session_id))

    def get(self, id_or_prefix: str, *, visible_to: Principal | None = None) -> Session:
        """A session by full id or unique prefix; one ``visible_to`` may not see is
        ``NotFound`` (prefixes match only the caller's own sessions)."""
        key = normalize_id(id_or_prefix)
        owner = owner_filter(visible_to)
        if len(key) == 32:
            session = self.run("read a session", lambda conn: self._fetch(conn, key))
            if owner is not None and session.owner != owner:
                raise NotFound(f"session not found: {key}", field="session_id")
            return session
        mine = "" if owner is None else " AND s.owner = %s"
        # A range scan of the primary key (ids collate bytewise); 'g' sorts right after 'f'.
        rows = self.run("read a session", lambda conn: conn.execute(
            f"SELECT {SELECTED} FROM sessions AS s WHERE s.id >= %s AND s.id < %s{mine} "
            "ORDER BY s.id LIMIT %s",
            (key, key + "g", *(() if owner is None else (owner,)), _AMBIGUOUS_SHOWN + 1),
        ).fetchall())
        if not rows:
            raise NotFound(f"no session found with id or prefix {key!r}", field="session_id")
        if len(rows) > 1:
            candidates = [r[0] for r in rows[:_AMBIGUOUS_SHOWN]]
            more = len(rows) > _AMBIGUOUS_SHOWN
            count = f"more than {_AMBIGUOUS_SHOWN}" if more else len(rows)
            raise AmbiguousPrefix(
                f"ambiguous session prefix {key!r}: matches {count} sessions "
                f"({', '.join(candidates)}{', ...' if more else ''}); use more characters",
                field="session_id", details={"candidates": candidates})
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
        owner = owner_filter(visible_to)
        source, alias, key_id, where, params = _listing_source(tag, working_dir)
        for column, value in (("backend", backend), ("status", status)):
            if value:
                where.append(f"{alias}.{column} = %s")
                params.append(value)
        if owner is not None:
            where.append("s.owner = %s")
            params.append(owner)
        filtered = list(params)  # the total ignores the page position
        count_clause = f" WHERE {' AND '.join(where)}" if where else ""
        if after is not None:
            where.append(f"({alias}.last_used, {key_id}) < (%s, %s)")
            params.extend(after)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = f"{alias}.last_used DESC, {key_id} DESC"
        counted = not working_dir and owner is None  # the trigger-kept counters apply

        def page(conn: Any) -> tuple[list[Any], int]:
            rows = conn.execute(
                f"SELECT {selected} FROM {source}{clause} ORDER BY {order} "
                "LIMIT %s OFFSET %s", (*params, limit, offset)).fetchall()
            if counted:
                total = count_sessions(conn, backend=backend, status=status, tag=tag)
            elif offset == 0 and after is None and len(rows) < limit:
                total = len(rows)
            else:  # O(sessions in that directory / of that owner), via their index
                total = conn.execute(f"SELECT COUNT(*) FROM {source}{count_clause}",
                                     filtered).fetchone()[0]
            return rows, int(total)

        rows, total = self.run("list sessions", page)
        next_cursor = None
        if len(rows) == limit:
            next_cursor = encode_cursor((rows[-1][key[0]], rows[-1][key[1]]))
        return rows, total, limit, offset, next_cursor

    def latest(self, *, backend: str | None = None, working_dir: str | None = None,
               resumable: bool = False, visible_to: Principal | None = None
               ) -> Session | None:
        """The most recently used session matching the filters (``resume --last``);
        ``resumable=True`` skips sessions whose backend never reported its own id."""
        where: list[str] = []
        params: list[Any] = []
        owner = owner_filter(visible_to)
        for column, value in (("backend", backend), ("working_dir", working_dir),
                              ("owner", owner)):
            if value:
                where.append(f"s.{column} = %s")
                params.append(value)
        if resumable:
            where.append("s.backend_session_id IS NOT NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        row = self.run("read the latest session", lambda conn: conn.execute(
            f"SELECT {SELECTED} FROM sessions AS s{clause} "
            "ORDER BY s.last_used DESC, s.id DESC LIMIT 1", params).fetchone())
        return row_to_session(row) if row else None

    def count(self, *, backend: str | None = None, status: str | None = None,
              tag: str | None = None, visible_to: Principal | None = None) -> int:
        """Number of sessions, from the counters; for one owner, a count over its index."""
        if status:
            check_status(status)
        if owner_filter(visible_to) is not None:
            return self.list(backend=backend, status=status, tag=tag, limit=1,
                             visible_to=visible_to).total
        return self.run("count sessions", lambda conn: count_sessions(
            conn, backend=backend, status=status, tag=tag))


def _listing_source(tag: str | None, working_dir: str | None
                    ) -> tuple[str, str, str, list[str], list[Any]]:
    """FROM clause, the alias whose (last_used, id) orders the page, and the first filters.

    A tag listing walks session_tags (its indexes hold the page order); a working_dir
    narrows to one project, so its index is walked and the tag checked per row.
    """
    if tag and not working_dir:
        return ("session_tags AS t JOIN sessions AS s ON s.id = t.session_id", "t",
                "t.session_id", ["t.tag = %s"], [tag])
    where: list[str] = []
    params: list[Any] = []
    if working_dir:
        where.append("s.working_dir = %s")
        params.append(working_dir)
    if tag:
        where.append("EXISTS (SELECT 1 FROM session_tags AS t "
                     "WHERE t.session_id = s.id AND t.tag = %s)")
        params.append(tag)
    return "sessions AS s", "s", "s.id", where, params
