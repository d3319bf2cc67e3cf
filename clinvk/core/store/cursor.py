"""Opaque keyset cursors: a listing's position as a token the caller hands back.

A cursor carries the sort key of the last row of a page (for sessions: ``last_used``
and ``id``); the next page is "rows strictly after that key in the listing order", an
index range scan whose cost does not depend on how deep the page is. The token is
URL-safe base64 of a compact JSON array, unpadded. It is opaque to callers, not secret:
it only names a position, and every query still applies the caller's visibility filter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from clinvk.core.errors import InvalidRequest

#: A cursor's parts: the sort-key values of the row it points after.
CursorKey = tuple[str | int | float, ...]

#: Longer tokens are refused unread: no position this server issues is near this size.
MAX_CURSOR_CHARS = 512


def encode_cursor(key: Sequence[str | int | float]) -> str:
    """The token naming the position just after the row whose sort key is ``key``."""
    raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(token: str, shape: Sequence[type], field: str = "cursor") -> CursorKey:
    """The sort key inside ``token``, checked against ``shape`` (one type per part).

    Anything this server did not issue (bad base64, not JSON, wrong arity or types) is an
    :class:`InvalidRequest` naming ``field``, never an error deeper down.
    """
    parts = _parse(token) if len(token) <= MAX_CURSOR_CHARS else None
    if parts is None or len(parts) != len(shape) or not all(
        _fits(value, kind) for value, kind in zip(parts, shape, strict=True)
    ):
        raise InvalidRequest("is not a cursor this server issued", field=field)
    return tuple(parts)


def _parse(token: str) -> list[object] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError):  # bad base64, non-ASCII, not JSON
        return None
    return parts if isinstance(parts, list) else None


def _fits(value: object, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int to isinstance; no key part is a bool
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)
