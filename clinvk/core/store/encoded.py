"""A session row's record already encoded: the ``record_json`` column (migration 009).

A listing's cost was Python turning each row into the response's dict and orjson
encoding it again, on every read. Instead each write of a session row stores the bytes
of the record as listings show it, and a page is those bytes joined
(:class:`~clinvk.core.store.records.SessionJsonPage`), with no Python object per row.

The bytes are ``orjson.dumps`` of :func:`~clinvk.core.store.rows.row_to_record` without
the ``owner`` (who may see a session is not part of what it shows: the owner stays in its
own column, where listings filter on it). Every store computes them with
:func:`encode_record` from the row as it is after the write, so the shape is defined
once; ``None`` (NULL in the column) is a record orjson refuses to encode (metadata
holding an integer beyond 64 bits), whose page a listing then builds the old way.

Every statement that changes a session column must refresh the column in the same
transaction; tests/core/store check after every store operation that each row's
``record_json`` is what :func:`encode_record` makes of its columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from clinvk.core.store.rows import COLUMNS, row_to_record

__all__ = ["BACKFILL_BATCH", "RECORD_JSON_VERSION", "encode_record", "refreshed"]

#: The schema version that adds ``record_json``: migrating past it fills the column.
RECORD_JSON_VERSION = 9
#: Rows encoded per UPDATE batch while the migration fills the column.
BACKFILL_BATCH = 20_000

_OWNER = COLUMNS.index("owner")


def encode_record(row: Sequence[Any]) -> bytes | None:
    """The ``record_json`` of a row in :data:`COLUMNS` order: its listed record's JSON,
    or ``None`` when orjson cannot encode it."""
    record = row_to_record(row[: len(COLUMNS)])
    del record["owner"]
    try:
        return orjson.dumps(record)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return None


def refreshed(rows: Iterable[Sequence[Any]]) -> list[tuple[bytes | None, Any]]:
    """``(record_json, key)`` for rows in :data:`COLUMNS` order, each followed by the key
    its UPDATE finds it by (what a migration's fill writes, one batch at a time)."""
    return [(encode_record(row), row[-1]) for row in rows]
