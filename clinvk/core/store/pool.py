"""Connection pool settings of a store served by a database server (``store.pool_*``).

Plain data, importable without the database driver: the config names them for every
store, only the PostgreSQL one uses them (the embedded SQLite store has no pool).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PoolSettings"]


@dataclass(frozen=True)
class PoolSettings:
    """Sizes and timeouts of one process's pool (``store.pool_*`` in the config)."""

    min_size: int = 1
    max_size: int = 10
    timeout_secs: float = 10.0
    connect_timeout_secs: int = 5
