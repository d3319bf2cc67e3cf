"""Persistence of sessions and jobs behind one small interface (docs/sessions.md).

* :mod:`records` — the records (``Session``, ``SessionPage``) and shared limits;
* :mod:`interface` — the ``Store`` protocol every caller types against;
* :mod:`migrations` + ``sql/<dialect>/NNN_*.sql`` — the schema, one numbered file per step;
* :mod:`sqlite` — the embedded implementation (the default); a PostgreSQL one sits beside
  it with its own ``sql/postgresql`` directory;
* :mod:`checks`, :mod:`lease_owners`, :mod:`cursor` — what every implementation shares.
"""

from __future__ import annotations

from pathlib import Path

from clinvk.core.store.interface import JobTable, SessionLease, Store, UsageTable
from clinvk.core.store.records import (
    DEFAULT_LEASE_SECONDS,
    MAX_LIST_LIMIT,
    MIN_PREFIX_LENGTH,
    STATUSES,
    Session,
    SessionPage,
    default_store_path,
    derive_title,
)

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "MAX_LIST_LIMIT",
    "MIN_PREFIX_LENGTH",
    "STATUSES",
    "JobTable",
    "Session",
    "SessionLease",
    "SessionPage",
    "Store",
    "UsageTable",
    "default_store_path",
    "derive_title",
    "open_store",
]


def open_store(location: str | Path) -> Store:
    """The store at ``location``: a file path or ``sqlite:///path`` (the embedded store)."""
    from clinvk.core.store.sqlite import SqliteStore  # the implementation loads on demand

    text = str(location)
    if text.startswith("sqlite://"):
        text = text.removeprefix("sqlite://")
    return SqliteStore(text)
