"""Session listings as every store implementation serves them.

A dialect's ``_page`` runs one listing query (filters, owner, offset or cursor) for the
columns it is given; :class:`Listings` reads that page either as records (``list``) or as
each row's stored ``record_json`` (``list_json``, what the HTTP listing joins into its body).
"""

from __future__ import annotations

from typing import Any

from clinvk.core.ownership import Principal
from clinvk.core.store.records import DEFAULT_LIST_LIMIT, SessionJsonPage, SessionPage
from clinvk.core.store.rows import COLUMNS, row_to_record

__all__ = ["SELECTED", "Listings"]

#: Every column of a session row, as a listing selects them from ``sessions AS s``.
SELECTED = ", ".join(f"s.{c}" for c in COLUMNS)
# Where a selected row holds (last_used, id): the next page's cursor.
_ROW_KEY = (COLUMNS.index("last_used"), COLUMNS.index("id"))
_JSON_SELECTED = "s.record_json, s.last_used, s.id"
_JSON_KEY = (1, 2)

Page = tuple[list[Any], int, int, int, str | None]


class Listings:
    """``list`` and ``list_json`` of a store whose class defines ``_page``."""

    def _page(
        self, selected: str, key: tuple[int, int], *, backend: str | None,
        status: str | None, tag: str | None, working_dir: str | None, limit: int,
        offset: int, visible_to: Principal | None, cursor: str | None,
    ) -> Page:
        """The rows (``selected`` columns, whose ``key`` positions hold last_used and id)
        of one listing page, its total, limit, offset and next cursor."""
        raise NotImplementedError

    def list(
        self, *, backend: str | None = None, status: str | None = None,
        tag: str | None = None, working_dir: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT, offset: int = 0,
        visible_to: Principal | None = None, cursor: str | None = None,
    ) -> SessionPage:
        """One page of sessions, most recently used first (ties broken by id, descending);
        with ``visible_to``, only the sessions that caller may see. ``cursor`` (a previous
        page's ``next_cursor``) starts the page just after that page's last row: the same
        index range scan at any depth, unlike ``offset``."""
        rows, total, limit, offset, next_cursor = self._page(
            SELECTED, _ROW_KEY, backend=backend, status=status, tag=tag,
            working_dir=working_dir, limit=limit, offset=offset, visible_to=visible_to,
            cursor=cursor)
        return SessionPage([row_to_record(r) for r in rows], total, limit, offset, next_cursor)

    def list_json(
        self, *, backend: str | None = None, status: str | None = None,
        tag: str | None = None, working_dir: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT, offset: int = 0,
        visible_to: Principal | None = None, cursor: str | None = None,
    ) -> SessionJsonPage:
        """The page :meth:`list` gives, as each row's stored ``record_json``."""
        rows, total, limit, offset, next_cursor = self._page(
            _JSON_SELECTED, _JSON_KEY, backend=backend, status=status, tag=tag,
            working_dir=working_dir, limit=limit, offset=offset, visible_to=visible_to,
            cursor=cursor)
        return SessionJsonPage([r[0] for r in rows], total, limit, offset, next_cursor)
