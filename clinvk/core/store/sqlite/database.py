"""SQLite plumbing of the embedded store: one file shared by threads and processes.

* WAL mode + ``busy_timeout``: readers never block the single writer and writers queue
  politely instead of failing at once.
* Reads use one connection per thread (``threading.local``): ``sqlite3`` connections must
  not be shared between threads mid-statement, and WAL lets readers run side by side.
* Writes use one connection per process, taken with the process's write lock: SQLite has
  one writer at a time anyway, and a thread that only writes (a vendor-API run recording
  its usage row) opens no connection, and no page cache, of its own.
* A fork drops the parent's connections.
* The schema is the numbered scripts in ``clinvk/core/store/sql/sqlite``; the database's
  ``user_version`` is the last one applied.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from clinvk.core.errors import StoreError, StoreUnavailable
from clinvk.core.store.encoded import BACKFILL_BATCH, RECORD_JSON_VERSION, refreshed
from clinvk.core.store.migrations import latest_version, migrations
from clinvk.core.store.records import DEFAULT_BUSY_TIMEOUT
from clinvk.core.store.rows import COLUMNS
from clinvk.core.types import StoreDialect

__all__ = ["SqliteDatabase", "split_script"]


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


def split_script(script: str) -> list[str]:
    """The statements of a migration script, each complete (trigger bodies included).

    Run one by one, not with ``executescript``: that would COMMIT our BEGIN IMMEDIATE.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().rstrip(";"))
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending!r}")
    return statements


#: Primary result codes that mean "the file cannot be reached right now" rather than "this
#: store is broken": the request gets 503 ``store_unavailable`` instead of 500.
_UNREADABLE = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM})


class SqliteDatabase:
    """Connections, transactions and migrations of one SQLite store file."""

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
        self._writer: _Holder | None = None
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
        return f"{type(self).__name__}({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this process opened (call at shutdown, not mid-request)."""
        for holder in list(self._holders):
            holder.close()
        self._local = threading.local()
        self._writer = None

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

    def _held(self, holder: _Holder | None) -> _Holder:
        """``holder`` if it holds a connection of this process, else a new one."""
        if holder is None or holder.conn is None or holder.pid != os.getpid():
            holder = _Holder(self._connect())
            self._holders.add(holder)
            _ALL_HOLDERS.add(holder)
        return holder

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, for reads."""
        holder = self._held(getattr(self._local, "holder", None))
        self._local.holder = holder
        assert holder.conn is not None
        return holder.conn

    def _writer_conn(self) -> sqlite3.Connection:
        """The process's write connection; only under ``_write_lock``."""
        self._writer = holder = self._held(self._writer)
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
            elif getattr(exc, "sqlite_errorcode", 0) & 0xFF in _UNREADABLE:
                raise StoreUnavailable(
                    f"session store {self.path}: cannot {action}: {exc} (the file cannot "
                    "be opened or read: removed, permissions changed, or an I/O error)",
                    details=details) from exc
            raise StoreError(
                f"session store {self.path}: cannot {action}: {exc}{hint}",
                details=details,
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the write connection, which it yields; it takes the lock
        up front (no deadlock on upgrade). Reads inside it go through that connection: the
        thread's own one does not see the transaction's changes."""
        with self._write_lock:
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: never leave the write connection inside a
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
        latest = latest_version(StoreDialect.SQLITE)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == latest:
            return
        if version > latest:
            raise StoreError(
                f"session store {self.path}: schema version {version} is newer than this "
                f"clinvk understands ({latest}); upgrade clinvk",
                details={"path": str(self.path)},
            )
        with self._write() as writer:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = writer.execute("PRAGMA user_version").fetchone()[0]
            for step in migrations(StoreDialect.SQLITE)[version:]:
                for statement in split_script(step.script):
                    writer.execute(statement)
                if step.version == RECORD_JSON_VERSION:
                    self._fill_record_json(writer)
                writer.execute(f"PRAGMA user_version = {step.version}")
        # A migration may rewrite a whole table (009 does): its pages sit in the -wal file,
        # which a checkpoint copies back but never shrinks while a connection stays open.
        # Outside the transaction (a checkpoint cannot run in one), still under the lock
        # that the write connection is only ever used with.
        with self._write_lock:
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    @staticmethod
    def _fill_record_json(conn: sqlite3.Connection) -> None:
        """Encode every existing session row's record (part of migration 009), in rowid
        batches: docs/sessions.md says how long a million rows take."""
        select = (f"SELECT {', '.join(COLUMNS)}, rowid FROM sessions WHERE rowid > ? "
                  "ORDER BY rowid LIMIT ?")
        last = 0
        while rows := conn.execute(select, (last, BACKFILL_BATCH)).fetchall():
            conn.executemany("UPDATE sessions SET record_json = ? WHERE rowid = ?",
                             refreshed(rows))
            last = rows[-1][-1]

