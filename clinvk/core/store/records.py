"""The store's records and the limits every store implementation shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from clinvk.core.events import TokenUsage
from clinvk.core.types import SessionStatus, values

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_LIST_LIMIT",
    "FirstTurn",
    "MAX_LIST_LIMIT",
    "MIN_PREFIX_LENGTH",
    "STATUSES",
    "Session",
    "SessionJsonPage",
    "SessionPage",
    "default_store_path",
    "derive_title",
]

STATUSES: tuple[str, ...] = values(SessionStatus)
DEFAULT_LEASE_SECONDS = 3600.0
DEFAULT_BUSY_TIMEOUT = 10.0
MIN_PREFIX_LENGTH = 4
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100
TITLE_MAX_CHARS = 80
UPDATABLE_FIELDS = frozenset({"status", "tags", "metadata", "title", "error_message"})


def default_store_path(home: Path) -> Path:
    """Where the store lives: ``$CLINVK_HOME/sessions.db`` (one file, no index to clobber)."""
    return Path(home) / "sessions.db"


def derive_title(prompt: str, max_chars: int = TITLE_MAX_CHARS) -> str:
    """Title from the first non-blank prompt line, whitespace collapsed, cut by characters.

    Cutting by characters (not bytes) never splits a UTF-8 sequence.
    """
    for line in (prompt or "").splitlines():
        text = " ".join(line.split())
        if text:
            break
    else:
        return ""
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "\u2026"
    return text





@dataclass
class Session:
    """One conversation with a backend CLI, as stored (docs/sessions.md, Record)."""

    id: str
    backend: str
    backend_session_id: str | None
    created_at: str
    last_used: str
    working_dir: str
    model: str | None = None
    initial_prompt: str = ""
    title: str = ""
    status: str = SessionStatus.ACTIVE
    turn_count: int = 0
    token_usage: TokenUsage = field(default_factory=TokenUsage)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    parent_id: str | None = None
    owner: str | None = None  # key id of the API key that created it (clinvk.core.ownership)

    @property
    def resumable(self) -> bool:
        """A session can be continued only once the backend told us its own id."""
        return bool(self.backend_session_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with every field (edges decide what to hide)."""
        return {
            "id": self.id,
            "backend": self.backend,
            "backend_session_id": self.backend_session_id,
            "created_at": self.created_at,
            "last_used": self.last_used,
            "working_dir": self.working_dir,
            "model": self.model,
            "initial_prompt": self.initial_prompt,
            "title": self.title,
            "status": self.status,
            "turn_count": self.turn_count,
            "token_usage": self.token_usage.to_dict(),
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "error_message": self.error_message,
            "parent_id": self.parent_id,
            "owner": self.owner,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Session:
        """The session a :meth:`to_dict` record describes (the inverse of it)."""
        return cls(
            id=record["id"],
            backend=record["backend"],
            backend_session_id=record["backend_session_id"],
            created_at=record["created_at"],
            last_used=record["last_used"],
            working_dir=record["working_dir"],
            model=record["model"],
            initial_prompt=record["initial_prompt"],
            title=record["title"],
            status=record["status"],
            turn_count=record["turn_count"],
            token_usage=TokenUsage.from_dict(record["token_usage"]),
            tags=list(record["tags"]),
            metadata=dict(record["metadata"]),
            error_message=record["error_message"],
            parent_id=record["parent_id"],
            owner=record["owner"],
        )


@dataclass(frozen=True)
class FirstTurn:
    """The first turn of a session whose row is written only once that turn is over.

    ``create(first_turn=...)`` inserts the session with its id and the turn already
    counted: one write where a session's first turn otherwise takes an insert before the
    run and an update after it. The turn's status, model and backend session id are
    ``create``'s own arguments.
    """

    session_id: str  # chosen before the run (the run's events carry it)
    usage: TokenUsage | None = None  # None: counted as a turn, no tokens stored
    error_message: str | None = None


@dataclass
class SessionPage:
    """One page of a listing plus the total match count, for pagination UIs.

    The page holds its sessions as JSON-ready records (:meth:`Session.to_dict` shape),
    built straight from the store's rows, without a :class:`Session` per row; ``sessions``
    gives the objects when a caller wants them (built once, on first use). The HTTP
    listing reads :class:`SessionJsonPage` instead (no Python object per row at all).
    """

    records: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None  # the position after this page; None on the last page

    @cached_property
    def sessions(self) -> list[Session]:
        return [Session.from_record(r) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": [dict(r) for r in self.records],
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": self.next_cursor,
        }


@dataclass
class SessionJsonPage:
    """One page of a listing as encoded records (``record_json``), in page order, with the
    same total, limit, offset and cursor as :class:`SessionPage`
    (clinvk.core.store.encoded says what the bytes are).

    An entry is ``None`` for a row orjson cannot encode; a caller that needs every entry
    lists the page again as records (:meth:`Store.list`).
    """

    encoded: list[bytes | None]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every row of the page has its encoding."""
        return None not in self.encoded
