"""Session rows in SQLite: the statements built from the shared column order
(:mod:`clinvk.core.store.rows`, re-exported here for the SQLite modules)."""

from __future__ import annotations

from clinvk.core.store.rows import COLUMNS, row_to_record, row_to_session, session_to_row

__all__ = ["COLUMNS", "INSERT", "INSERT_LEASED", "INSERT_TAG", "RETURNING", "SELECTED",
           "row_to_record", "row_to_session", "session_to_row"]

SELECTED = ", ".join(f"s.{c}" for c in COLUMNS)
RETURNING = ", ".join(COLUMNS)
INSERT = "INSERT INTO sessions ({}) VALUES ({})".format(
    ", ".join(COLUMNS), ", ".join("?" for _ in COLUMNS)
)
# A new session whose first turn is starting: born busy (no second write for the lease).
INSERT_LEASED = "INSERT INTO sessions ({}, lease_owner, lease_expires) VALUES ({})".format(
    ", ".join(COLUMNS), ", ".join("?" for _ in range(len(COLUMNS) + 2))
)
INSERT_TAG = (
    "INSERT OR IGNORE INTO session_tags (session_id, tag, backend, status, last_used) "
    "VALUES (?, ?, ?, ?, ?)"
)
