"""A ledger row, and the usage question a caller asks (time range, grouping, recent runs).

Both edges validate a question through :func:`parse_query`, so the HTTP route and
``clinvk usage`` accept the same spellings and refuse the same mistakes with the same
message naming the field.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import TokenUsage
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.types import UsageGroup, values

GROUPS: tuple[str, ...] = values(UsageGroup)
MAX_RECENT = 500
#: The sums the ledger reports for each group, in the order a UsageTable returns them.
SUM_NAMES = ("runs", "failed_runs", "input_tokens", "output_tokens", "cached_tokens",
             "cost_usd", "duration_ms")
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class UsageRow:
    """One finished run, as the ledger keeps it (never the prompt, output or key)."""

    at: float  # wall-clock end of the run, epoch seconds
    key_id: str | None  # the caller's key id; None for local callers or a keyless server
    backend: str
    model: str | None
    origin: str  # RunOrigin
    status: str  # ok | failed | timeout | cancelled
    exit_code: int | None
    duration_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    session_id: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of_run(cls, *, key_id: str | None, backend: str, model: str | None, origin: str,
               status: str, exit_code: int | None, duration_ms: int, usage: TokenUsage,
               session_id: str | None, at: float | None = None) -> UsageRow:
        return cls(at=time.time() if at is None else at, key_id=key_id, backend=backend,
                   model=model, origin=origin, status=status, exit_code=exit_code,
                   duration_ms=duration_ms, input_tokens=usage.input_tokens,
                   output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
                   cost_usd=usage.cost_usd, session_id=session_id)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d")

    @property
    def hour(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:00Z")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": format_time(self.at),
            "key_id": self.key_id,
            "backend": self.backend,
            "model": self.model,
            "origin": self.origin,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "session_id": self.session_id,
        }


@dataclass(frozen=True)
class UsageQuery:
    """Which rows (time range, whose) and how to sum them (group_by; recent rows too)."""

    since: float | None = None
    until: float | None = None
    group_by: tuple[str, ...] = ()
    recent: int = 0
    visible_to: Principal = LOCAL


def format_time(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, as every other clinvk timestamp."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: str, field_name: str, *, now: float | None = None) -> float:
    """``2026-12-07``, ``2026-12-07T08:00:00Z`` (naive = UTC), or an age such as ``24h``,
    ``7d``, ``90m`` (that long before now) -> epoch seconds."""
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{field_name} must not be empty", field=field_name)
    age = _RELATIVE.fullmatch(text)
    if age:
        current = time.time() if now is None else now
        return current - int(age.group(1)) * _SECONDS[age.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidRequest(
            f"{field_name} must be a date (2026-12-07), an RFC 3339 time "
            f"(2026-12-07T08:00:00Z) or an age such as 24h or 7d; got {text[:40]!r}",
            field=field_name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = moment.timestamp()
    if not math.isfinite(epoch):  # pragma: no cover - fromisoformat keeps years sane
        raise InvalidRequest(f"{field_name} is out of range", field=field_name)
    return epoch


def parse_group_by(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``key,backend`` (or a list of names) -> the group names, in order, once each."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in GROUPS:
            raise InvalidRequest(
                f"group_by must be a comma-separated list of {', '.join(GROUPS)}; "
                f"got {item.strip()[:40]!r}", field="group_by")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_query(*, since: str | None = None, until: str | None = None,
                group_by: str | list[str] | tuple[str, ...] | None = None,
                recent: int | str | None = None, visible_to: Principal = LOCAL,
                now: float | None = None) -> UsageQuery:
    """Validate a usage question; raises ``InvalidRequest`` naming the field."""
    start = parse_time(since, "since", now=now) if since is not None else None
    end = parse_time(until, "until", now=now) if until is not None else None
    if start is not None and end is not None and end < start:
        raise InvalidRequest("until must not be before since", field="until")
    count = 0
    if recent is not None:
        try:
            count = int(recent)
        except (TypeError, ValueError):
            count = -1
        if isinstance(recent, bool) or not 0 <= count <= MAX_RECENT:
            raise InvalidRequest(f"recent must be an integer from 0 to {MAX_RECENT}",
                                 field="recent")
    return UsageQuery(since=start, until=end, group_by=parse_group_by(group_by),
                      recent=count, visible_to=visible_to)
