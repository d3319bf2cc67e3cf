"""Stand-in stores for failure tests."""

from __future__ import annotations

from pathlib import Path

from clinvk.core.errors import StoreError, StoreUnavailable


class BrokenStore:
    """A store whose every call fails, as a corrupt or unreadable database would."""

    path = Path("/nonexistent/sessions.db")

    @property
    def jobs(self):
        raise StoreError("cannot open the job tables in /secret/path/sessions.db")

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreError("disk I/O error at /secret/path/sessions.db")

        return fail


class UnreachableStore(BrokenStore):
    """A store that cannot be reached right now (a shared database down)."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreUnavailable("connection refused to db.internal:5432")

        return fail
