"""The embedded store: one SQLite file (WAL) shared by the CLI and every server worker."""

from clinvk.core.store.sqlite.jobs import SqliteJobStore
from clinvk.core.store.sqlite.lease import Lease
from clinvk.core.store.sqlite.sessions import SqliteStore

__all__ = ["Lease", "SqliteJobStore", "SqliteStore"]
