"""Value checks of config keys: each returns None when a (type-correct) value is fine,
else the reason, which the loader reports with the key and where the value came from."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: A check returns None when the (already type-correct) value is fine, else the reason.
Check = Callable[[Any], "str | None"]


def at_least(lo: int) -> Check:
    def check(v: int) -> str | None:
        return None if v >= lo else f"must be >= {lo}, got {v}"

    return check


def between(lo: int, hi: int) -> Check:
    def check(v: int) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


def one_of(choices: Iterable[str], *, allow_empty: bool = False) -> Check:
    options = tuple(choices)

    def check(v: str) -> str | None:
        if v in options or (allow_empty and v == ""):
            return None
        listed = ", ".join(repr(o) for o in options)
        if allow_empty:
            listed += " or '' (not set)"
        return f"must be one of {listed}, got {v!r}"

    return check


def non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def host_name(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        pass
    if v == "localhost" or (0 < len(v) <= 253 and re.fullmatch(r"[A-Za-z0-9.-]+", v)):
        return None
    return f"must be an IP address or a host name, got {v!r}"


def storage_uri(v: str) -> str | None:
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", v):
        return None
    return f"must be a storage URI such as 'memory://' or 'redis://host:6379', got {v!r}"


def mask_url_password(url: str, mask: str = "***") -> str:
    """``url`` with the password of its user info (``scheme://user:pw@host``) masked."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{mask}@{host}"))


def store_url(v: str) -> str | None:
    """'' (the SQLite file in the clinvk home), a path, sqlite:///path or postgresql://…"""
    if v == "" or v.startswith("/") or re.fullmatch(r"sqlite:///\S+", v):
        return None
    if re.fullmatch(r"postgres(ql)?://[^\s/]*(/[^\s/?]+)?(\?\S*)?", v):
        return None
    return ("must be empty (the SQLite file in the clinvk home), an absolute path, "
            f"'sqlite:///path' or 'postgresql://user@host:5432/db', got "
            f"{mask_url_password(v)!r}")


def broker_url(v: str) -> str | None:
    if v == "" or re.fullmatch(r"rediss?://\S+", v):
        return None
    return f"must be a Redis URL such as 'redis://host:6379/0' (or empty), got {v!r}"


def queue_word(v: str) -> str | None:
    if v == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
        return None
    return f"may only contain letters, digits and _ . - (at most 63), got {v!r}"


def gopass_path(v: str) -> str | None:
    if v == "" or re.fullmatch(r"[A-Za-z0-9/_.\-]+", v):
        return None
    return f"may only contain letters, digits and / _ . -, got {v!r}"


def each(check: Check) -> Check:
    def check_all(items: tuple[str, ...]) -> str | None:
        for i, item in enumerate(items):
            reason = check(item)
            if reason:
                return f"item {i} ({item!r}): {reason}"
        return None

    return check_all


def ip_network(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=False)
        return None
    except ValueError:
        return "must be an IP address or CIDR network"


def cors_origin(v: str) -> str | None:
    if v == "*" or re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", v):
        return None
    return "must be '*' or an origin such as 'https://app.example.com'"


def absolute_path(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path"


def key_id(v: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{24}", v):
        return None
    return "must be a key id (24 hex digits, as `clinvk keys id` prints), never the key itself"


def env_var_names(v: dict[str, str]) -> str | None:
    for name in v:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return f"{name!r} is not a valid environment variable name"
    return None


def alias_names(v: dict[str, str]) -> str | None:
    for name, model in v.items():
        if not name.strip() or any(c.isspace() for c in name):
            return f"alias name {name!r} must be non-empty without spaces"
        if not model.strip():
            return f"alias {name!r} must map to a non-empty model name"
    return None


def lower(v: str) -> str:
    return v.lower()
