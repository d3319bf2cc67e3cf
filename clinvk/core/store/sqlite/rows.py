"""Session rows in SQLite: the statements built from the shared column order
(:mod:`clinvk.core.store.rows`, re-exported here for the SQLite modules)."""

from __future__ import annotations

from clinvk.core.store.listing import SELECTED
from clinvk.core.store.rows import COLUMNS, row_to_record, row_to_session, session_to_row

__all__ = ["COLUMNS", "INSERT", "INSERT_LEASED", "INSERT_TAG", "REFRESH", "RETURNING",
           "SELECTED", "row_to_record", "row_to_session", "session_to_row"]

RETURNING = ", ".join(COLUMNS)
# A row is COLUMNS then its record_json (clinvk.core.store.encoded).
INSERT = "INSERT INTO sessions ({}, record_json) VALUES ({})".format(
    ", ".join(COLUMNS), ", ".join("?" for _ in range(len(COLUMNS) + 1))
)
# A new session whose first turn is starting: born busy (no second write for the lease).
INSERT_LEASED = (
    "INSERT INTO sessions ({}, record_json, lease_owner, lease_expires) VALUES ({})".format(
        ", ".join(COLUMNS), ", ".join("?" for _ in range(len(COLUMNS) + 3))
    )
)
# After a statement that changed a row's columns: its record_json from the row as returned.
REFRESH = "UPDATE sessions SET record_json = ? WHERE id = ?"
INSERT_TAG = (
    "INSERT OR IGNORE INTO session_tags (session_id, tag, backend, status, last_used) "
    "VALUES (?, ?, ?, ?, ?)"
)
