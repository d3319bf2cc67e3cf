"""API key ids: the stable, non-reversible name of a key.

A key id names a key wherever the key itself must not appear: rate-limit buckets, log
lines, the owner of a session, ``server.admin_key_ids`` in a config file. It is the first
24 hex digits of a domain-separated SHA-256 of the key, so the same key always has the same
id and an id gives nothing away about its key. ``clinvk keys id`` prints a key's id.
"""

from __future__ import annotations

import hashlib

_DOMAIN = b"clinvk-api-key\0"


def key_id(key: str) -> str:
    """The id of ``key`` (24 lowercase hex digits)."""
    return hashlib.sha256(_DOMAIN + key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
