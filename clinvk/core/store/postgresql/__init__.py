"""The shared store: sessions, leases, jobs and stored responses in PostgreSQL
(``store.url: postgresql://…``; needs the ``postgres`` extra: psycopg and psycopg_pool)."""

from clinvk.core.store.postgresql.database import PoolSettings, redact
from clinvk.core.store.postgresql.sessions import PostgresStore

__all__ = ["PoolSettings", "PostgresStore", "redact"]
