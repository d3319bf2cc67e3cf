"""Session store (SPEC §5): one SQLite database shared by threads and processes.

Why SQLite and not one JSON file per session (the Go tool's layout): the Go store kept a
separate index file that every writer rewrote from a stale in-memory copy, so sessions
vanished (upstream BUG-1/BUG-2). Here every mutation is a single SQL statement or one
``BEGIN IMMEDIATE`` transaction, so concurrent CLI runs and gunicorn workers never lose
each other's updates.

Design points, each with its reason:

* WAL mode + ``busy_timeout``: readers never block the single writer and writers queue
  politely instead of failing at once.
* One connection per thread (``threading.local``): ``sqlite3`` connections must not be
  shared between threads mid-statement; a fork drops the parent's connections.
* Timestamps are stored as REAL epoch seconds (sortable, indexable) and rendered as
  RFC 3339 UTC strings with milliseconds on the way out.
* ``record_turn`` is one ``UPDATE ... RETURNING`` with ``x = x + ?`` arithmetic, so two
  turns finishing at once both count (the Go tool was last-writer-wins).
* ``busy()`` is a lease stored in the row itself (``lease_owner``/``lease_expires``),
  which works across processes and expires, so a crashed worker cannot lock a session
  forever; a lease whose holder is a dead process of this host is taken over at once.
* ``count()`` reads a small counter table kept exact by triggers, so ``/health`` never
  scans the sessions table.

Nothing here knows about HTTP or click: failures are :mod:`clinvk.core.errors` exceptions.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from clinvk.core.errors import AmbiguousPrefix, InvalidRequest, NotFound, SessionBusy, StoreError
from clinvk.core.events import TokenUsage, utc_timestamp
from clinvk.core.ownership import Principal
from clinvk.core.store.cursor import decode_cursor, encode_cursor

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "MAX_LIST_LIMIT",
    "MIN_PREFIX_LENGTH",
    "STATUSES",
    "Lease",
    "Session",
    "SessionPage",
    "SessionStore",
    "default_store_path",
    "derive_title",
]

STATUSES: tuple[str, ...] = ("active", "completed", "error", "paused")
SCHEMA_VERSION = 2
DEFAULT_LEASE_SECONDS = 3600.0
DEFAULT_BUSY_TIMEOUT = 10.0
MIN_PREFIX_LENGTH = 4
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100
TITLE_MAX_CHARS = 80
_AMBIGUOUS_SHOWN = 5
_ID_RE = re.compile(r"[0-9a-f]{32}")
_PREFIX_RE = re.compile(rf"[0-9a-f]{{{MIN_PREFIX_LENGTH},32}}")
UPDATABLE_FIELDS = frozenset({"status", "tags", "metadata", "title", "error_message"})


def default_store_path(home: Path) -> Path:
    """Where the store lives: ``$CLINVK_HOME/sessions.db`` (one file, no index to clobber)."""
    return Path(home) / "sessions.db"


def derive_title(prompt: str, max_chars: int = TITLE_MAX_CHARS) -> str:
    """Title from the first non-blank prompt line, whitespace collapsed, cut by characters.

    Cutting by characters (not bytes) never splits a UTF-8 sequence (upstream BUG-17).
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


# --------------------------------------------------------------------------- records


@dataclass
class Session:
    """One conversation with a backend CLI, as stored (SPEC §5 record)."""

    id: str
    backend: str
    backend_session_id: str | None
    created_at: str
    last_used: str
    working_dir: str
    model: str | None = None
    initial_prompt: str = ""
    title: str = ""
    status: str = "active"
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


@dataclass
class SessionPage:
    """One page of a listing plus the total match count, for pagination UIs."""

    sessions: list[Session]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None  # the position after this page; None on the last page

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": [s.to_dict() for s in self.sessions],
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": self.next_cursor,
        }


# --------------------------------------------------------------------------- schema

_COLUMNS = (
    "id",
    "backend",
    "backend_session_id",
    "created_at",
    "last_used",
    "working_dir",
    "model",
    "initial_prompt",
    "title",
    "status",
    "turn_count",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "tags",
    "metadata",
    "error_message",
    "parent_id",
    "owner",
)
_SELECT = ", ".join(f"s.{c}" for c in _COLUMNS)
_RETURNING = ", ".join(_COLUMNS)
_INSERT = "INSERT INTO sessions ({}) VALUES ({})".format(
    ", ".join(_COLUMNS), ", ".join("?" for _ in _COLUMNS)
)
# A new session whose first turn is starting: born busy (no second write for the lease).
_INSERT_LEASED = "INSERT INTO sessions ({}, lease_owner, lease_expires) VALUES ({})".format(
    ", ".join(_COLUMNS), ", ".join("?" for _ in range(len(_COLUMNS) + 2))
)
_INSERT_TAG = (
    "INSERT OR IGNORE INTO session_tags (session_id, tag, backend, status, last_used) "
    "VALUES (?, ?, ?, ?, ?)"
)
_STATUS_CHECK = ", ".join(f"'{s}'" for s in STATUSES)

# Statement lists, not one script: ``executescript`` would COMMIT our BEGIN IMMEDIATE.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        f"""CREATE TABLE sessions (
            id TEXT PRIMARY KEY NOT NULL,
            backend TEXT NOT NULL,
            backend_session_id TEXT,
            created_at REAL NOT NULL,
            last_used REAL NOT NULL,
            working_dir TEXT NOT NULL,
            model TEXT,
            initial_prompt TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ({_STATUS_CHECK})),
            turn_count INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{{}}',
            error_message TEXT,
            parent_id TEXT,
            lease_owner TEXT,
            lease_expires REAL
        )""",
        # One index per listing shape, each ending in (last_used, id) so a page is an
        # index range scan in ORDER BY order: no sort, no full scan.
        "CREATE INDEX sessions_by_last_used ON sessions (last_used, id)",
        "CREATE INDEX sessions_by_backend ON sessions (backend, last_used, id)",
        "CREATE INDEX sessions_by_status ON sessions (status, last_used, id)",
        "CREATE INDEX sessions_by_backend_status ON sessions (backend, status, last_used, id)",
        "CREATE INDEX sessions_by_working_dir ON sessions (working_dir, last_used, id)",
        # Tags: one row per (session, tag) carrying copies of backend, status and
        # last_used (kept in sync by triggers), so "tag = x [AND backend/status = y]
        # ORDER BY last_used DESC" is an index range scan too.
        """CREATE TABLE session_tags (
            session_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            backend TEXT NOT NULL,
            status TEXT NOT NULL,
            last_used REAL NOT NULL,
            PRIMARY KEY (session_id, tag)
        ) WITHOUT ROWID""",
        "CREATE INDEX session_tags_by_tag ON session_tags (tag, last_used, session_id)",
        "CREATE INDEX session_tags_by_tag_backend "
        "ON session_tags (tag, backend, last_used, session_id)",
        "CREATE INDEX session_tags_by_tag_status "
        "ON session_tags (tag, status, last_used, session_id)",
        "CREATE INDEX session_tags_by_tag_backend_status "
        "ON session_tags (tag, backend, status, last_used, session_id)",
        # Exact counts per (backend, status) and per (tag, backend, status), so count()
        # and every page total without a working_dir filter are O(1).
        """CREATE TABLE session_counts (
            backend TEXT NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (backend, status)
        ) WITHOUT ROWID""",
        """CREATE TABLE tag_counts (
            tag TEXT NOT NULL,
            backend TEXT NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (tag, backend, status)
        ) WITHOUT ROWID""",
        """CREATE TRIGGER sessions_after_insert AFTER INSERT ON sessions BEGIN
            INSERT INTO session_counts (backend, status, n) VALUES (NEW.backend, NEW.status, 1)
                ON CONFLICT (backend, status) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER sessions_after_delete AFTER DELETE ON sessions BEGIN
            UPDATE session_counts SET n = n - 1
                WHERE backend = OLD.backend AND status = OLD.status;
            DELETE FROM session_tags WHERE session_id = OLD.id;
        END""",
        """CREATE TRIGGER sessions_after_update_kind AFTER UPDATE OF backend, status ON sessions
        WHEN OLD.backend IS NOT NEW.backend OR OLD.status IS NOT NEW.status BEGIN
            UPDATE session_counts SET n = n - 1
                WHERE backend = OLD.backend AND status = OLD.status;
            INSERT INTO session_counts (backend, status, n) VALUES (NEW.backend, NEW.status, 1)
                ON CONFLICT (backend, status) DO UPDATE SET n = n + 1;
            UPDATE session_tags SET backend = NEW.backend, status = NEW.status
                WHERE session_id = NEW.id;
        END""",
        """CREATE TRIGGER sessions_after_update_last_used AFTER UPDATE OF last_used ON sessions
        WHEN NEW.last_used IS NOT OLD.last_used AND NEW.tags <> '[]' BEGIN
            UPDATE session_tags SET last_used = NEW.last_used WHERE session_id = NEW.id;
        END""",
        """CREATE TRIGGER session_tags_after_insert AFTER INSERT ON session_tags BEGIN
            INSERT INTO tag_counts (tag, backend, status, n)
                VALUES (NEW.tag, NEW.backend, NEW.status, 1)
                ON CONFLICT (tag, backend, status) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER session_tags_after_delete AFTER DELETE ON session_tags BEGIN
            UPDATE tag_counts SET n = n - 1
                WHERE tag = OLD.tag AND backend = OLD.backend AND status = OLD.status;
        END""",
        """CREATE TRIGGER session_tags_after_update_kind
        AFTER UPDATE OF backend, status ON session_tags
        WHEN OLD.backend IS NOT NEW.backend OR OLD.status IS NOT NEW.status BEGIN
            UPDATE tag_counts SET n = n - 1
                WHERE tag = OLD.tag AND backend = OLD.backend AND status = OLD.status;
            INSERT INTO tag_counts (tag, backend, status, n)
                VALUES (NEW.tag, NEW.backend, NEW.status, 1)
                ON CONFLICT (tag, backend, status) DO UPDATE SET n = n + 1;
        END""",
    ],
    # Ownership: the key id of the creating API key; NULL (rows from before, or made
    # without keys) is visible to admins and key-less callers only.
    2: [
        "ALTER TABLE sessions ADD COLUMN owner TEXT",
        "CREATE INDEX sessions_by_owner ON sessions (owner, last_used, id)",
    ],
}


# --------------------------------------------------------------------------- connections


class _Holder:
    """Owns one thread's connection; closing on garbage collection frees dead threads' files."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.pid = os.getpid()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and self.pid == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - also runs from __del__ at interpreter exit
                pass

    def __del__(self) -> None:
        self.close()


_ALL_HOLDERS: weakref.WeakSet[_Holder] = weakref.WeakSet()
# Connections inherited over fork: never closed or used in the child (SQLite forbids it),
# only kept alive so their finalizer cannot run there.
_INHERITED: list[_Holder] = []


def _after_fork_in_child() -> None:
    _INHERITED.extend(_ALL_HOLDERS)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- validation


def _normalize_id(value: Any) -> str:
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


def _check_status(status: Any, name: str = "status") -> str:
    if status not in STATUSES:
        raise InvalidRequest(
            f"invalid status {status!r}: expected one of {', '.join(STATUSES)}", field=name
        )
    return status


def _check_tags(tags: Any) -> list[str]:
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


def _dump_metadata(metadata: Any) -> str:
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


def _check_optional_str(value: Any, name: str) -> str | None:
    """``None`` and ``""`` both mean "not given" (an empty backend id is no id at all)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", field=name)
    return value


def _check_usage(usage: Any) -> TokenUsage | None:
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


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be an integer {bound}, got {value!r}", field=name)
    return value


def _epoch(timestamp: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or offset) back to epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _row_to_session(row: sqlite3.Row | tuple[Any, ...]) -> Session:
    (
        sid,
        backend,
        backend_session_id,
        created_at,
        last_used,
        working_dir,
        model,
        initial_prompt,
        title,
        status,
        turn_count,
        input_tokens,
        output_tokens,
        cached_tokens,
        reasoning_tokens,
        cost_usd,
        tags,
        metadata,
        error_message,
        parent_id,
        owner,
    ) = tuple(row)
    return Session(
        id=sid,
        backend=backend,
        backend_session_id=backend_session_id,
        created_at=utc_timestamp(created_at),
        last_used=utc_timestamp(last_used),
        working_dir=working_dir,
        model=model,
        initial_prompt=initial_prompt,
        title=title,
        status=status,
        turn_count=turn_count,
        token_usage=TokenUsage(
            input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd
        ),
        tags=json.loads(tags) if tags != "[]" else [],
        metadata=json.loads(metadata) if metadata != "{}" else {},
        error_message=error_message,
        parent_id=parent_id,
        owner=owner,
    )


def _session_to_row(session: Session) -> tuple[Any, ...]:
    usage = session.token_usage
    return (
        session.id,
        session.backend,
        session.backend_session_id,
        _epoch(session.created_at),
        _epoch(session.last_used),
        session.working_dir,
        session.model,
        session.initial_prompt,
        session.title,
        session.status,
        session.turn_count,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        usage.cost_usd,
        json.dumps(list(session.tags), ensure_ascii=False),
        _dump_metadata(session.metadata),
        session.error_message,
        session.parent_id,
        session.owner,
    )


def _owner_filter(visible_to: Principal | None) -> str | None:
    """The owner a query must be restricted to, or ``None`` for no restriction."""
    if visible_to is None or visible_to.sees_all:
        return None
    return visible_to.key_id


# --------------------------------------------------------------------------- lease


def _pid_namespace() -> str:
    """This process's pid namespace: pids of two lease holders compare only within one."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


#: ``host@pid-namespace``: the part of a lease owner that says where its pid is valid.
_LEASE_NODE = f"{socket.gethostname()}@{_pid_namespace()}"


# Leases this process holds right now. A lease of this process that is not here was given
# up by its holder but could not be cleared (the release write failed, e.g. on a full disk).
_LIVE_OWNERS: set[str] = set()


def _holder_is_dead(owner: str) -> bool:
    """Whether a lease ``owner`` is gone: a process of this host (and pid namespace) that
    no longer runs, or a holder in this very process that already gave the lease up.

    Anything unknown (another host, an older owner format, a pid that exists, even as
    someone else's) counts as alive: then only the lease expiry frees the session.
    """
    node, _, rest = owner.partition(":")
    if node != _LEASE_NODE or node.endswith("@"):
        return False
    pid_text = rest.partition(":")[0]
    if not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    if int(pid_text) == os.getpid():
        return owner not in _LIVE_OWNERS
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    # A killed worker stays a zombie until its parent (gunicorn's master) reaps it; it
    # answers signal 0 but will never release its lease.
    try:
        with open(f"/proc/{pid_text}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class Lease:
    """A claim that one turn of a session is running (``SessionStore.busy``).

    The claim lives in the session row, so it excludes other threads *and* other processes.
    It expires after ``ttl_seconds`` so a crashed holder cannot lock the session forever;
    a long turn calls :meth:`renew` to keep it. A lease held by a process of this host
    that no longer exists (a ``kill -9``-ed gunicorn worker or CLI) is taken over at once
    instead of blocking the session until it expires.
    """

    def __init__(self, store: SessionStore, id_or_prefix: str | None, ttl_seconds: float
                 ) -> None:
        # ``id_or_prefix=None``: a lease for a session that ``create(lease=...)`` inserts.
        self._store = store
        self._key = id_or_prefix
        self.ttl_seconds = _check_ttl(ttl_seconds)
        self.session_id: str | None = None
        self.owner = f"{_LEASE_NODE}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:12]}"
        self.expires_at: float | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> Lease:
        """Claim the session with one conditional UPDATE, or raise ``SessionBusy``."""
        # Listed as live before the claim is written, so that no other thread of this
        # process can see the claim in the database and take it for abandoned.
        _LIVE_OWNERS.add(self.owner)
        try:
            return self._acquire()
        except BaseException:
            _LIVE_OWNERS.discard(self.owner)
            raise

    def _acquire(self) -> Lease:
        if self._held:
            raise SessionBusy(f"session {self.session_id} is busy: another turn is running")
        if self._key is None:
            raise InvalidRequest("this lease is taken by create(lease=...)", field="session_id")
        store = self._store
        self.session_id = store._resolve(self._key)
        now = store._clock()
        expires = now + self.ttl_seconds
        row = None
        with store._guard("claim the session"):
            conn = store._conn()
            cur = conn.execute(
                "UPDATE sessions SET lease_owner = ?, lease_expires = ? "
                "WHERE id = ? AND (lease_owner IS NULL OR lease_expires < ?)",
                (self.owner, expires, self.session_id, now),
            )
            claimed = cur.rowcount == 1
            if not claimed:
                row = conn.execute(
                    "SELECT lease_expires, lease_owner FROM sessions WHERE id = ?",
                    (self.session_id,),
                ).fetchone()
                if row is not None and row[1] and _holder_is_dead(row[1]):
                    # The holder died mid-turn: take its lease over (only if it is still
                    # that holder's, so two claimants cannot both win).
                    cur = conn.execute(
                        "UPDATE sessions SET lease_owner = ?, lease_expires = ? "
                        "WHERE id = ? AND lease_owner = ?",
                        (self.owner, expires, self.session_id, row[1]),
                    )
                    claimed = cur.rowcount == 1
        if not claimed:
            if row is None:
                raise NotFound(f"session not found: {self.session_id}", field="session_id")
            raise SessionBusy(
                f"session {self.session_id} is busy: another turn is running",
                details={
                    "session_id": self.session_id,
                    "lease_expires": utc_timestamp(row[0]) if row[0] is not None else None,
                },
            )
        self.expires_at = expires
        self._held = True
        return self

    def renew(self, ttl_seconds: float | None = None) -> None:
        """Push the expiry out again; raise ``SessionBusy`` if the lease was lost meanwhile."""
        if not self._held:
            raise SessionBusy(f"lease on session {self.session_id} is not held")
        ttl = self.ttl_seconds if ttl_seconds is None else _check_ttl(ttl_seconds)
        expires = self._store._clock() + ttl
        with self._store._guard("renew the session lease"):
            cur = self._store._conn().execute(
                "UPDATE sessions SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                (expires, self.session_id, self.owner),
            )
        if cur.rowcount != 1:
            self._held = False
            _LIVE_OWNERS.discard(self.owner)
            raise SessionBusy(
                f"session {self.session_id} is busy: the lease expired and another turn took it"
            )
        self.expires_at = expires

    def release(self) -> None:
        """Drop the claim (idempotent); never touches a lease someone else took over."""
        if not self._held:
            return
        self._held = False
        _LIVE_OWNERS.discard(self.owner)  # given up even if the write below fails
        with self._store._guard("release the session lease"):
            self._store._conn().execute(
                "UPDATE sessions SET lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (self.session_id, self.owner),
            )

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except StoreError:
            # Don't mask the turn's own exception with a release failure; the lease
            # expires on its own.
            if exc_type is None:
                raise


def _check_ttl(ttl: Any) -> float:
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not (math.isfinite(ttl) and ttl > 0)
    ):
        raise InvalidRequest(
            f"lease ttl must be a positive number of seconds, got {ttl!r}", field="ttl_seconds"
        )
    return float(ttl)


# --------------------------------------------------------------------------- store


class SessionStore:
    """SQLite-backed session store, safe for many threads and processes at once."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout = float(busy_timeout)
        self._clock: Callable[[], float] = clock or time.time
        self._local = threading.local()
        self._holders: weakref.WeakSet[_Holder] = weakref.WeakSet()
        # This process's writers queue here, and the next one starts the moment the lock
        # is free. Left to SQLite, a writer that finds the database locked polls with
        # sleeps of up to 100 ms (the busy handler), which made 64 concurrent requests wait
        # seconds; other processes' writers still meet busy_timeout.
        self._write_lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Prompts can be sensitive: create the file owner-only; SQLite gives the
                # -wal/-shm files the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StoreError(
                f"session store {self.path}: cannot create the database file: {exc}",
                details={"path": str(self.path)},
            ) from exc
        with self._guard("open the database"):
            self._init_schema()

    # -- plumbing ---------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SessionStore({str(self.path)!r})"

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this process opened (call at shutdown, not mid-request)."""
        for holder in list(self._holders):
            holder.close()
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit; multi-statement writes use BEGIN IMMEDIATE
            check_same_thread=False,  # only so close() may close other threads' handles
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # WAL + NORMAL: durable across process crashes; a power cut may lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        # 8 MiB page cache (default 2 MiB): keeps the hot index pages of a 100k-session
        # store in memory; it fills only as far as it is used.
        conn.execute("PRAGMA cache_size = -8192")
        return conn

    def _conn(self) -> sqlite3.Connection:
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is None or holder.conn is None or holder.pid != os.getpid():
            holder = _Holder(self._connect())
            self._local.holder = holder
            self._holders.add(holder)
            _ALL_HOLDERS.add(holder)
        assert holder.conn is not None
        return holder.conn

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn any SQLite failure into a StoreError that names the database file."""
        try:
            yield
        except sqlite3.Error as exc:
            hint = ""
            details = {"path": str(self.path)}
            text = str(exc).lower()
            if "disk is full" in text or getattr(exc, "sqlite_errorcode", 0) == sqlite3.SQLITE_FULL:
                details["reason"] = "disk_full"  # the edges tell the client so plainly
            elif "locked" in text or "busy" in text:
                hint = f" (another writer held the database for more than {self.busy_timeout:g} s)"
            elif "not a database" in text or "malformed" in text:
                hint = " (the file is corrupt or not a clinvk session store)"
            elif "readonly" in text or "read-only" in text:
                hint = " (the file or its directory is read-only)"
            raise StoreError(
                f"session store {self.path}: cannot {action}: {exc}{hint}",
                details=details,
            ) from exc

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A write transaction that takes the lock up front (no deadlock on upgrade)."""
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: never leave this thread's connection inside a
                # transaction, or its next BEGIN would fail too.
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    @contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A read transaction, so a page and its total come from the same snapshot."""
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _init_schema(self) -> None:
        conn = self._conn()
        deadline = time.monotonic() + self.busy_timeout
        while True:  # switching to WAL needs a moment with no other connection active
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"session store {self.path}: schema version {version} is newer than this "
                f"clinvk understands ({SCHEMA_VERSION}); upgrade clinvk",
                details={"path": str(self.path)},
            )
        with self._write(conn):
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    def _resolve(self, id_or_prefix: str) -> str:
        """Full id for a full id or unique prefix (a full id skips the lookup)."""
        key = _normalize_id(id_or_prefix)
        if len(key) == 32:
            return key
        return self.get(key).id

    def _fetch(self, session_id: str) -> Session:
        row = (
            self._conn()
            .execute(f"SELECT {_SELECT} FROM sessions AS s WHERE s.id = ?", (session_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"session not found: {session_id}", field="session_id")
        return _row_to_session(row)

    # -- create / read ----------------------------------------------------------------

    def create(
        self,
        *,
        backend: str,
        working_dir: str,
        model: str | None = None,
        initial_prompt: str = "",
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
        status: str = "active",
        backend_session_id: str | None = None,
        lease: Lease | None = None,
        owner: str | None = None,
    ) -> Session:
        """Insert a new session; ``working_dir`` must already be the resolved absolute path.

        With ``lease`` (from :meth:`new_lease`) the session is inserted busy, held by that
        lease: its first turn is guarded like any other, without a second write.
        """
        if not isinstance(backend, str) or not backend.strip():
            raise InvalidRequest("backend must be a non-empty string", field="backend")
        if not isinstance(working_dir, str) or not os.path.isabs(working_dir):
            raise InvalidRequest(
                f"working_dir must be an absolute path, got {working_dir!r}", field="working_dir"
            )
        if not isinstance(initial_prompt, str):
            raise InvalidRequest("initial_prompt must be a string", field="initial_prompt")
        if parent_id is not None and (
            not isinstance(parent_id, str) or not _ID_RE.fullmatch(parent_id)
        ):
            raise InvalidRequest(
                "parent_id must be a full 32-character session id", field="parent_id"
            )
        tag_list = _check_tags(tags)
        meta_json = _dump_metadata(metadata)
        now = self._clock()
        session = Session(
            id=uuid.uuid4().hex,
            backend=backend.strip(),
            backend_session_id=_check_optional_str(backend_session_id, "backend_session_id"),
            created_at=utc_timestamp(now),
            last_used=utc_timestamp(now),
            working_dir=working_dir,
            model=_check_optional_str(model, "model"),
            initial_prompt=initial_prompt,
            title=derive_title(initial_prompt),
            status=_check_status(status),
            turn_count=0,
            token_usage=TokenUsage(),
            tags=tag_list,
            metadata=json.loads(meta_json),
            error_message=None,
            parent_id=parent_id,
            owner=_check_optional_str(owner, "owner"),
        )
        row = list(_session_to_row(session))
        row[3] = row[4] = now  # keep full precision, not the millisecond string
        if lease is not None:
            if lease.held or lease._key is not None:
                raise InvalidRequest("create() needs a fresh lease from new_lease()",
                                     field="lease")
            row += [lease.owner, now + lease.ttl_seconds]
            _LIVE_OWNERS.add(lease.owner)  # before the row exists (see Lease.acquire)
        try:
            self._insert(row, lease is not None, session, tag_list, now)
        except BaseException:
            if lease is not None:
                _LIVE_OWNERS.discard(lease.owner)
            raise
        if lease is not None:
            lease._key = lease.session_id = session.id
            lease.expires_at = now + lease.ttl_seconds
            lease._held = True
        return session

    def _insert(self, row: list[Any], leased: bool, session: Session, tag_list: list[str],
                now: float) -> None:
        with self._guard("create a session"):
            conn = self._conn()
            with self._write(conn):
                conn.execute(_INSERT_LEASED if leased else _INSERT, row)
                conn.executemany(
                    _INSERT_TAG,
                    [(session.id, t, session.backend, session.status, now) for t in tag_list],
                )

    def _insert_many(self, sessions: Iterable[Session]) -> int:
        """Bulk insert already-built records in one transaction (benchmarks, imports)."""
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, str, str, str, float]] = []
        for session in sessions:
            row = _session_to_row(session)
            rows.append(row)
            tag_rows.extend(
                (session.id, tag, session.backend, session.status, row[4]) for tag in session.tags
            )
        with self._guard("insert sessions"):
            conn = self._conn()
            with self._write(conn):
                conn.executemany(_INSERT, rows)
                conn.executemany(_INSERT_TAG, tag_rows)
        return len(rows)

    def get(self, id_or_prefix: str, *, visible_to: Principal | None = None) -> Session:
        """Look a session up by full id or a unique prefix of at least 4 hex characters.

        With ``visible_to``, a session that caller may not see does not exist for it (the
        same ``NotFound``; prefixes only match the caller's own sessions).
        """
        key = _normalize_id(id_or_prefix)
        owner = _owner_filter(visible_to)
        with self._guard("read a session"):
            if len(key) == 32:
                session = self._fetch(key)
                if owner is not None and session.owner != owner:
                    raise NotFound(f"session not found: {key}", field="session_id")
                return session
            # Range scan on the primary key; 'g' sorts right after 'f'.
            mine = "" if owner is None else " AND s.owner = ?"
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_SELECT} FROM sessions AS s WHERE s.id >= ? AND s.id < ?{mine} "
                    "ORDER BY s.id LIMIT ?",
                    (key, key + "g", *(() if owner is None else (owner,)),
                     _AMBIGUOUS_SHOWN + 1),
                )
                .fetchall()
            )
        if not rows:
            raise NotFound(f"no session found with id or prefix {key!r}", field="session_id")
        if len(rows) > 1:
            candidates = [r[0] for r in rows[:_AMBIGUOUS_SHOWN]]
            count = f"more than {_AMBIGUOUS_SHOWN}" if len(rows) > _AMBIGUOUS_SHOWN else len(rows)
            raise AmbiguousPrefix(
                f"ambiguous session prefix {key!r}: matches {count} sessions "
                f"({', '.join(candidates)}{', ...' if len(rows) > _AMBIGUOUS_SHOWN else ''}); "
                "use more characters",
                field="session_id",
                details={"candidates": candidates},
            )
        return _row_to_session(rows[0])

    def list(
        self,
        *,
        backend: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        working_dir: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
        visible_to: Principal | None = None,
        cursor: str | None = None,
    ) -> SessionPage:
        """One page of sessions, most recently used first (ties broken by id, descending);
        with ``visible_to``, only the sessions that caller may see. ``cursor`` (a previous
        page's ``next_cursor``) starts the page just after that page's last row: the same
        index range scan at any depth, unlike ``offset``."""
        limit = _check_int(limit, "limit", 1, MAX_LIST_LIMIT)
        offset = _check_int(offset, "offset", 0)
        after = decode_cursor(cursor, (float, str)) if cursor else None
        if status:
            _check_status(status)
        where: list[str] = []
        params: list[Any] = []
        if tag and not working_dir:
            # CROSS JOIN pins session_tags as the outer loop: its (tag[, backend][, status],
            # last_used) indexes yield rows already in page order.
            source = "session_tags AS t CROSS JOIN sessions AS s ON s.id = t.session_id"
            order = "t.last_used DESC, t.session_id DESC"
            alias = "t"
            where.append("t.tag = ?")
            params.append(tag)
        else:
            # A working_dir narrows to one project's sessions: walk its index and check
            # the tag per row (a primary-key probe) rather than walk every tagged session.
            source = "sessions AS s"
            order = "s.last_used DESC, s.id DESC"
            alias = "s"
            if working_dir:
                source += " INDEXED BY sessions_by_working_dir"
                where.append("s.working_dir = ?")
                params.append(working_dir)
            if tag:
                where.append(
                    "EXISTS (SELECT 1 FROM session_tags AS t "
                    "WHERE t.session_id = s.id AND t.tag = ?)"
                )
                params.append(tag)
        for column, value in (("backend", backend), ("status", status)):
            if value:
                where.append(f"{alias}.{column} = ?")
                params.append(value)
        owner = _owner_filter(visible_to)
        if owner is not None:
            if not working_dir and not tag:
                source = "sessions AS s INDEXED BY sessions_by_owner"
            where.append("s.owner = ?")
            params.append(owner)
        filtered = list(params)  # the count ignores the page position
        count_clause = f" WHERE {' AND '.join(where)}" if where else ""
        if after is not None:
            # Row values compare like the ORDER BY, so the index range starts at the cursor.
            key_id = "t.session_id" if alias == "t" else "s.id"
            where.append(f"({alias}.last_used, {key_id}) < (?, ?)")
            params.extend(after)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        counted = not working_dir and owner is None  # the trigger-kept counters apply
        with self._guard("list sessions"):
            conn = self._conn()
            with self._snapshot(conn):
                rows = conn.execute(
                    f"SELECT {_SELECT} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                    (*params, limit, offset),
                ).fetchall()
                if counted:
                    total = self._count(conn, backend=backend, status=status, tag=tag)
                elif offset == 0 and after is None and len(rows) < limit:
                    total = len(rows)
                else:  # O(sessions in that directory / of that owner), via their index
                    total = conn.execute(
                        f"SELECT COUNT(*) FROM {source}{count_clause}", filtered
                    ).fetchone()[0]
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = encode_cursor((last[_COLUMNS.index("last_used")], last[0]))
        sessions = [_row_to_session(r) for r in rows]
        return SessionPage(sessions, total, limit, offset, next_cursor)

    def latest(
        self,
        *,
        backend: str | None = None,
        working_dir: str | None = None,
        resumable: bool = False,
        visible_to: Principal | None = None,
    ) -> Session | None:
        """Most recently used session matching the filters (for ``resume --last``).

        ``resumable=True`` skips sessions whose backend never reported its own id.
        """
        where: list[str] = []
        params: list[Any] = []
        if backend:
            where.append("s.backend = ?")
            params.append(backend)
        if working_dir:
            where.append("s.working_dir = ?")
            params.append(working_dir)
        if resumable:
            where.append("s.backend_session_id IS NOT NULL")
        owner = _owner_filter(visible_to)
        if owner is not None:
            where.append("s.owner = ?")
            params.append(owner)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._guard("read the latest session"):
            row = (
                self._conn()
                .execute(
                    f"SELECT {_SELECT} FROM sessions AS s{clause} "
                    "ORDER BY s.last_used DESC, s.id DESC LIMIT 1",
                    params,
                )
                .fetchone()
            )
        return _row_to_session(row) if row else None

    def count(
        self, *, backend: str | None = None, status: str | None = None, tag: str | None = None,
        visible_to: Principal | None = None,
    ) -> int:
        """Number of sessions, from the trigger-maintained counters (no table scan); with
        ``visible_to`` restricted to one owner, a count over that owner's index."""
        if status:
            _check_status(status)
        owner = _owner_filter(visible_to)
        if owner is not None:
            return self.list(backend=backend, status=status, tag=tag, limit=1,
                             visible_to=visible_to).total
        with self._guard("count sessions"):
            return self._count(self._conn(), backend=backend, status=status, tag=tag)

    @staticmethod
    def _count(
        conn: sqlite3.Connection,
        *,
        backend: str | None,
        status: str | None,
        tag: str | None = None,
    ) -> int:
        where: list[str] = []
        params: list[Any] = []
        table = "session_counts"
        if tag:
            table = "tag_counts"
            where.append("tag = ?")
            params.append(tag)
        if backend:
            where.append("backend = ?")
            params.append(backend)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table}{clause}", params).fetchone()[
            0
        ]

    # -- mutate -----------------------------------------------------------------------

    def record_turn(
        self,
        session_id: str,
        *,
        usage: TokenUsage | None = None,
        backend_session_id: str | None = None,
        status: str | None = None,
        error_message: str | None = None,
        model: str | None = None,
        turns: int = 1,
        release: Lease | None = None,
    ) -> Session:
        """Account one finished turn in a single UPDATE (no lost update under concurrency).

        Adds 1 turn and ``usage``, sets ``last_used`` to now, and overwrites
        ``backend_session_id``/``status``/``error_message``/``model`` only when given. A
        non-error ``status`` without an ``error_message`` clears the previous error (the
        Go tool left stale errors on completed sessions, upstream BUG-19). ``turns=0``
        amends the last turn instead (the engine records a turn when the CLI printed its
        result and corrects it if the exit disagrees). ``release`` gives that turn's lease
        back in the same write (only if it is still that lease's).
        """
        usage = _check_usage(usage)
        turns = _check_int(turns, "turns", 0, 1)
        if status is not None:
            _check_status(status)
        backend_session_id = _check_optional_str(backend_session_id, "backend_session_id")
        error_message = _check_optional_str(error_message, "error_message")
        model = _check_optional_str(model, "model")
        sid = self._resolve(session_id)
        u = usage or TokenUsage()
        params = {
            "id": sid,
            "now": self._clock(),
            "inp": u.input_tokens,
            "out": u.output_tokens,
            "cached": u.cached_tokens,
            "reasoning": u.reasoning_tokens,
            "cost": u.cost_usd,
            "bsid": backend_session_id,
            "status": status,
            "err": error_message,
            "model": model,
            "turns": turns,
            "owner": release.owner if release is not None and release.held else None,
        }
        sql = f"""UPDATE sessions SET
                turn_count = turn_count + :turns,
                input_tokens = input_tokens + :inp,
                output_tokens = output_tokens + :out,
                cached_tokens = cached_tokens + :cached,
                reasoning_tokens = reasoning_tokens + :reasoning,
                cost_usd = CASE WHEN :cost IS NULL THEN cost_usd
                                ELSE COALESCE(cost_usd, 0) + :cost END,
                last_used = :now,
                backend_session_id = COALESCE(:bsid, backend_session_id),
                status = COALESCE(:status, status),
                error_message = CASE WHEN :err IS NOT NULL THEN :err
                                     WHEN :status IS NOT NULL AND :status <> 'error' THEN NULL
                                     ELSE error_message END,
                model = COALESCE(:model, model),
                lease_expires = CASE WHEN lease_owner = :owner THEN NULL
                                     ELSE lease_expires END,
                lease_owner = CASE WHEN lease_owner = :owner THEN NULL ELSE lease_owner END
            WHERE id = :id
            RETURNING {_RETURNING}"""
        with self._guard("record a turn"):
            conn = self._conn()
            with self._write(conn):
                rows = conn.execute(sql, params).fetchall()
        if not rows:
            raise NotFound(f"session not found: {sid}", field="session_id")
        if params["owner"] is not None and release is not None:
            release._held = False
            _LIVE_OWNERS.discard(release.owner)
        return _row_to_session(rows[0])

    def update(self, session_id: str, **fields: Any) -> Session:
        """Edit ``status``, ``tags`` (replaced), ``metadata`` (replaced), ``title`` or
        ``error_message``. Does not touch ``last_used``: editing is not using."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"cannot update {', '.join(unknown)}: updatable fields are "
                f"{', '.join(sorted(UPDATABLE_FIELDS))}",
                field=unknown[0],
            )
        sets: list[str] = []
        params: list[Any] = []
        tag_list: list[str] | None = None
        if "status" in fields:
            sets.append("status = ?")
            params.append(_check_status(fields["status"]))
        if "tags" in fields:
            tag_list = _check_tags(fields["tags"])
            sets.append("tags = ?")
            params.append(json.dumps(tag_list, ensure_ascii=False))
        if "metadata" in fields:
            sets.append("metadata = ?")
            params.append(_dump_metadata(fields["metadata"]))
        if "title" in fields:
            title = fields["title"]
            if title is None:
                title = ""
            if not isinstance(title, str):
                raise InvalidRequest("title must be a string", field="title")
            title = " ".join(title.split())
            if len(title) > 200:
                raise InvalidRequest("title must be at most 200 characters", field="title")
            sets.append("title = ?")
            params.append(title)
        if "error_message" in fields:
            sets.append("error_message = ?")
            params.append(_check_optional_str(fields["error_message"], "error_message"))
        sid = self._resolve(session_id)
        with self._guard("update a session"):
            conn = self._conn()
            if not sets:
                return self._fetch(sid)
            with self._write(conn):
                cur = conn.execute(
                    f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?", (*params, sid)
                )
                if cur.rowcount != 1:
                    raise NotFound(f"session not found: {sid}", field="session_id")
                session = self._fetch(sid)
                if tag_list is not None:
                    row = conn.execute(
                        "SELECT backend, status, last_used FROM sessions WHERE id = ?", (sid,)
                    ).fetchone()
                    conn.execute("DELETE FROM session_tags WHERE session_id = ?", (sid,))
                    conn.executemany(_INSERT_TAG, [(sid, t, *row) for t in tag_list])
            return session

    def delete(self, id_or_prefix: str, *, force: bool = False,
               visible_to: Principal | None = None) -> Session:
        """Delete one session and return it. A session with a running turn (live lease)
        is refused with ``SessionBusy`` unless ``force``; one that ``visible_to`` may not
        see is ``NotFound``."""
        sid = self.get(id_or_prefix, visible_to=visible_to).id if visible_to is not None \
            else self._resolve(id_or_prefix)
        now = self._clock()
        with self._guard("delete a session"):
            conn = self._conn()
            with self._write(conn):
                rows = conn.execute(
                    f"DELETE FROM sessions WHERE id = ? AND "
                    f"(? OR lease_owner IS NULL OR lease_expires < ?) RETURNING {_RETURNING}",
                    (sid, bool(force), now),
                ).fetchall()
                exists = (
                    bool(rows)
                    or conn.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone()
                    is not None
                )
        if rows:
            return _row_to_session(rows[0])
        if exists:
            raise SessionBusy(f"session {sid} is busy: another turn is running")
        raise NotFound(f"session not found: {sid}", field="session_id")

    def cleanup(self, *, older_than_seconds: float, dry_run: bool = False) -> list[Session]:
        """Delete (or with ``dry_run`` just list) sessions unused for longer than the age.

        The age must be > 0: "0 days" meaning "delete everything" was upstream BUG-13;
        callers map "keep forever" to not calling this. Sessions with a running turn are
        kept. Returned most recently used first.
        """
        age = older_than_seconds
        if (
            isinstance(age, bool)
            or not isinstance(age, int | float)
            or not (math.isfinite(age) and age > 0)
        ):
            raise InvalidRequest(
                f"older_than_seconds must be a positive number, got {age!r}",
                field="older_than_seconds",
            )
        now = self._clock()
        cutoff = now - float(age)
        condition = "last_used < ? AND (lease_owner IS NULL OR lease_expires < ?)"
        with self._guard("clean up sessions"):
            conn = self._conn()
            if dry_run:
                rows = conn.execute(
                    f"SELECT {_SELECT} FROM sessions AS s WHERE {condition} "
                    "ORDER BY last_used DESC, id DESC",
                    (cutoff, now),
                ).fetchall()
            else:
                with self._write(conn):
                    rows = conn.execute(
                        f"DELETE FROM sessions WHERE {condition} RETURNING {_RETURNING}",
                        (cutoff, now),
                    ).fetchall()
        sessions = [_row_to_session(r) for r in rows]
        if not dry_run:
            order = {r[0]: (r[4], r[0]) for r in rows}
            sessions.sort(key=lambda s: order[s.id], reverse=True)
        return sessions

    def busy(self, session_id: str, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS) -> Lease:
        """Context manager that holds the "a turn is running" lease for one session.

        ``with store.busy(sid) as lease:`` raises ``SessionBusy`` if another thread or
        process holds a live lease, releases on exit (also on exceptions), and expires
        after ``ttl_seconds`` if the holder dies; call ``lease.renew()`` for longer turns.
        Not re-entrant: a second claim from the same thread is refused too.
        """
        return Lease(self, session_id, ttl_seconds)

    def new_lease(self, *, ttl_seconds: float = DEFAULT_LEASE_SECONDS) -> Lease:
        """A lease for a session about to be created busy: ``create(..., lease=lease)``."""
        return Lease(self, None, ttl_seconds)
