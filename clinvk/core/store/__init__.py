"""Persistence of sessions and jobs behind one small interface (docs/sessions.md).

* :mod:`records` — the records (``Session``, ``SessionPage``, ``SessionJsonPage``) and
  shared limits; :mod:`encoded` — each row's record stored encoded, for listings;
* :mod:`interface` — the ``Store`` protocol every caller types against;
* :mod:`migrations` + ``sql/<dialect>/NNN_*.sql`` — the schema, one numbered file per step;
* :mod:`sqlite` — the embedded implementation (the default); :mod:`postgresql` — the
  shared one (``store.url: postgresql://…``), with its own ``sql/postgresql`` directory;
* :mod:`checks`, :mod:`lease_owners`, :mod:`job_runners`, :mod:`cursor`, :mod:`listing` —
  what every implementation shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clinvk.core.store.interface import JobTable, SessionLease, Store, UsageTable
from clinvk.core.store.pool import PoolSettings
from clinvk.core.store.records import (
    DEFAULT_LEASE_SECONDS,
    MAX_LIST_LIMIT,
    MIN_PREFIX_LENGTH,
    STATUSES,
    FirstTurn,
    Session,
    SessionJsonPage,
    SessionPage,
    default_store_path,
    derive_title,
)

if TYPE_CHECKING:
    from clinvk.core.config import Config

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "MAX_LIST_LIMIT",
    "MIN_PREFIX_LENGTH",
    "STATUSES",
    "FirstTurn",
    "JobTable",
    "Session",
    "SessionJsonPage",
    "SessionLease",
    "SessionPage",
    "Store",
    "UsageTable",
    "default_store_path",
    "derive_title",
    "PoolSettings",
    "configured_store",
    "open_store",
]


def open_store(location: str | Path, *, pool: PoolSettings | None = None) -> Store:
    """The store at ``location``: a file path or ``sqlite:///path`` (the embedded store),
    or ``postgresql://…`` (the shared one; ``pool`` sizes this process's connections)."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from clinvk.core.store.postgresql import PostgresStore  # needs the postgres extra

        return PostgresStore(text, pool=pool)
    from clinvk.core.store.sqlite import SqliteStore  # the implementation loads on demand

    if text.startswith("sqlite://"):
        text = text.removeprefix("sqlite://")
    return SqliteStore(text)


def configured_store(config: Config, home: Path) -> Store:
    """The store ``store.*`` of ``config`` names; ``store.url`` empty = ``home``'s file."""
    settings = config.store
    location: str | Path = settings.url or default_store_path(home)
    return open_store(location, pool=PoolSettings(
        min_size=settings.pool_min_size, max_size=settings.pool_max_size,
        timeout_secs=float(settings.pool_timeout_secs),
        connect_timeout_secs=settings.connect_timeout_secs))
