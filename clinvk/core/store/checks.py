"""Validation of what callers hand the store: one clear ``InvalidRequest`` per bad field."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import TokenUsage
from clinvk.core.ownership import Principal
from clinvk.core.store.records import MIN_PREFIX_LENGTH, STATUSES

ID_RE = re.compile(r"[0-9a-f]{32}")
_PREFIX_RE = re.compile(rf"[0-9a-f]{{{MIN_PREFIX_LENGTH},32}}")


def normalize_id(value: Any) -> str:
    """Accept a full id or a prefix of >= 4 hex chars (any case); reject anything else."""
    if not isinstance(value, str):
        raise InvalidRequest("session id must be a string", field="session_id")
    key = value.strip().lower()
    if not _PREFIX_RE.fullmatch(key):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidRequest(
            f"invalid session id {shown!r}: use the full 32-character id or a unique prefix "
            f"of at least {MIN_PREFIX_LENGTH} hexadecimal characters (0-9, a-f)",
            field="session_id",
        )
    return key


def check_status(status: Any, name: str = "status") -> str:
    if status not in STATUSES:
        raise InvalidRequest(
            f"invalid status {status!r}: expected one of {', '.join(STATUSES)}", field=name
        )
    return status


def check_tags(tags: Any) -> list[str]:
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise InvalidRequest("tags must be a list of strings", field="tags")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidRequest("every tag must be a non-empty string", field="tags")
        tag = tag.strip()
        if tag not in out:
            out.append(tag)
    return out


def dump_metadata(metadata: Any) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object", field="metadata")
    try:
        return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"metadata must be JSON-serialisable: {exc}", field="metadata"
        ) from exc


def check_optional_str(value: Any, name: str) -> str | None:
    """``None`` and ``""`` both mean "not given" (an empty backend id is no id at all)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", field=name)
    return value


def check_usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    if not isinstance(usage, TokenUsage):
        raise InvalidRequest("usage must be a TokenUsage", field="usage")
    for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
        value = getattr(usage, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"usage.{name} must be a non-negative integer", field="usage")
    cost = usage.cost_usd
    if cost is not None and (not isinstance(cost, int | float) or not math.isfinite(cost)):
        raise InvalidRequest("usage.cost_usd must be a finite number", field="usage")
    return usage


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be an integer {bound}, got {value!r}", field=name)
    return value


def epoch(timestamp: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or offset) back to epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()



def owner_filter(visible_to: Principal | None) -> str | None:
    """The owner a query must be restricted to, or ``None`` for no restriction."""
    if visible_to is None or visible_to.sees_all:
        return None
    return visible_to.key_id



def check_ttl(ttl: Any) -> float:
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not (math.isfinite(ttl) and ttl > 0)
    ):
        raise InvalidRequest(
            f"lease ttl must be a positive number of seconds, got {ttl!r}", field="ttl_seconds"
        )
    return float(ttl)


