"""Durable jobs and their event logs in the SQLite store file, shared by every worker.

The tables are migration ``003_jobs.sql`` of the store (the session side applies it before
this opens). The store is also the medium between workers: a cancel request is a flag on
the row that the worker running the job polls, and followers of a job's events read the
log table, so any worker can answer any request about any job.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinvk.core.errors import StoreError
from clinvk.core.events import utc_timestamp
from clinvk.core.jobs.model import EVENTS_DROPPED, Job, JobKind, JobPage, JobStatus
from clinvk.core.store.job_rows import LISTED_COLUMNS, job_page
from clinvk.core.store.job_runners import DEFAULT_CLAIM_SECS, process_start_time, runner_gone

_COLUMNS = ("id, kind, status, owner, backend, request, created_at, started_at, finished_at, "
            "session_id, result, error, cancel_requested, last_sequence, dropped_through, "
            "callback_url, webhook")


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], kind=JobKind(row["kind"]), status=JobStatus(row["status"]),
        owner=row["owner"], backend=row["backend"], request=json.loads(row["request"]),
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], session_id=row["session_id"],
        result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        cancel_requested=bool(row["cancel_requested"]), last_sequence=row["last_sequence"],
        dropped_through=row["dropped_through"], callback_url=row["callback_url"],
        webhook=json.loads(row["webhook"]) if row["webhook"] else None)


class SqliteJobStore:
    """Jobs and event logs; thread-safe (one connection per process, behind a lock)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)  # the session database: its directory exists already
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout,
                                         check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            # Listings read plain tuples (a Row per field lookup costs more than the row).
            self._tuples = self._conn.cursor()
            self._tuples.row_factory = None
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is not fsynced (a power cut may lose the last events,
            # a crash of the process loses nothing); see docs/performance.md for the cost.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the job tables in {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- rows ---------------------------------------------------------------------------------

    def create(self, kind: JobKind, request: dict[str, Any], *, owner: str | None,
               backend: str | None, max_queued: int,
               webhook: dict[str, Any] | None = None) -> Job | None:
        """A new queued job, or None when ``max_queued`` jobs are already waiting;
        ``webhook`` is its initial delivery record (its ``url`` the callback URL)."""
        job_id = "job_" + uuid.uuid4().hex
        now = time.time()
        with self._tx() as conn:
            queued = conn.execute("SELECT count(*) FROM jobs WHERE status = ?",
                                  (JobStatus.QUEUED,)).fetchone()[0]
            if max_queued and queued >= max_queued:
                return None
            conn.execute(
                "INSERT INTO jobs (id, kind, status, owner, backend, request, created_at, "
                "created_epoch, callback_url, webhook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, JobStatus.QUEUED, owner, backend, json.dumps(request),
                 utc_timestamp(now), now, webhook["url"] if webhook else None,
                 json.dumps(webhook) if webhook else None))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list(self, *, owner: str | None, sees_all: bool, status: str | None = None,
             kind: str | None = None, backend: str | None = None, since: float | None = None,
             before: tuple[float, str] | None = None, limit: int = 50) -> JobPage:
        """Newest first; ``before`` is the (created_epoch, id) keyset of the last row seen.
        Each filter shape walks an index already in page order (owner's, status's or the
        creation index) from ``before`` on and stops after one page."""
        where, params = ["1 = 1"], []
        if not sees_all:
            where.append("owner IS ?")
            params.append(owner)
        for column, value in (("status", status), ("kind", kind), ("backend", backend)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("created_epoch >= ?")
            params.append(since)
        if before is not None:
            # A row value compares like the ORDER BY: the index range starts at the cursor.
            where.append("(created_epoch, id) < (?, ?)")
            params.extend(before)
        sql = (f"SELECT {LISTED_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
               "ORDER BY created_epoch DESC, id DESC LIMIT ?")
        with self._lock:
            rows = self._tuples.execute(sql, (*params, limit + 1)).fetchall()
        return job_page(rows, limit)

    def claim(self, job_id: str, pid: int, ttl_secs: float = DEFAULT_CLAIM_SECS) -> bool:
        """Take a queued job for process ``pid`` to dispatch (it stays queued until
        :meth:`start`): only when no live runner holds it; False otherwise (or when it
        was cancelled meanwhile)."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("SELECT runner_pid, runner_start, claim_expires FROM jobs "
                               "WHERE id = ? AND status = ?", (job_id, JobStatus.QUEUED)
                               ).fetchone()
            if row is None or not runner_gone(row[0], row[1], row[2], now):
                return False
            cur = conn.execute(
                "UPDATE jobs SET runner_pid = ?, runner_start = ?, claim_expires = ? "
                "WHERE id = ? AND status = ? AND runner_pid IS ? AND runner_start IS ?",
                (pid, process_start_time(pid), now + ttl_secs, job_id, JobStatus.QUEUED,
                 row[0], row[1]))
            return cur.rowcount == 1

    def renew_claim(self, job_id: str, pid: int, ttl_secs: float) -> bool:
        """The runner's heartbeat; False once the claim is no longer this process's."""
        with self._tx() as conn:
            return conn.execute(
                "UPDATE jobs SET claim_expires = ? WHERE id = ? AND runner_pid = ? AND "
                "runner_start IS ? AND status IN (?, ?)",
                (time.time() + ttl_secs, job_id, pid, process_start_time(pid),
                 JobStatus.QUEUED, JobStatus.RUNNING)).rowcount == 1

    def start(self, job_id: str, pid: int) -> bool:
        """queued -> running, by the process holding the claim, once its run started."""
        with self._tx() as conn:
            return conn.execute(
                "UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = ? "
                "AND runner_pid = ? AND runner_start IS ?",
                (JobStatus.RUNNING, utc_timestamp(), job_id, JobStatus.QUEUED, pid,
                 process_start_time(pid))).rowcount == 1

    def set_session(self, job_id: str, session_id: str | None, backend: str | None) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET session_id = coalesce(?, session_id), "
                         "backend = coalesce(?, backend) WHERE id = ?",
                         (session_id, backend, job_id))

    def finish(self, job_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: str | None = None, only_from: tuple[JobStatus, ...] = ()) -> bool:
        sql = ("UPDATE jobs SET status = ?, finished_at = ?, result = coalesce(?, result), "
               "error = coalesce(?, error) WHERE id = ?")
        params: list[Any] = [status, utc_timestamp(),
                             json.dumps(result) if result is not None else None, error, job_id]
        if only_from:
            sql += f" AND status IN ({', '.join('?' * len(only_from))})"
            params.extend(only_from)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount == 1

    def set_webhook(self, job_id: str, record: dict[str, Any]) -> None:
        """Replace the job's webhook delivery record (after each attempt)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET webhook = ? WHERE id = ?",
                         (json.dumps(record), job_id))

    def request_cancel(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._read("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def delete(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    # -- recovery and retention ----------------------------------------------------------------

    def orphaned_running(self) -> list[str]:
        """Running jobs whose runner process is gone (pid dead, or reused by another)."""
        rows = self._read("SELECT id, runner_pid, runner_start, claim_expires FROM jobs "
                          "WHERE status = ?", (JobStatus.RUNNING,))
        now = time.time()
        return [r["id"] for r in rows
                if runner_gone(r["runner_pid"], r["runner_start"], r["claim_expires"], now)]

    def queued(self) -> list[str]:
        rows = self._read("SELECT id FROM jobs WHERE status = ? ORDER BY created_epoch",
                          (JobStatus.QUEUED,))
        return [r[0] for r in rows]

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop finished jobs older than the age or beyond the newest ``max_count``."""
        finished = tuple(s for s in JobStatus if s.finished)
        marks = ", ".join("?" * len(finished))
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM jobs WHERE status IN ({marks}) AND (created_epoch < ? OR id "
                f"NOT IN (SELECT id FROM jobs WHERE status IN ({marks}) ORDER BY "
                "created_epoch DESC LIMIT ?))",
                (*finished, time.time() - max_age_secs, *finished, max_count))]
            for job_id in ids:
                conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return len(ids)

    # -- event log ----------------------------------------------------------------------------

    def append_event(self, job_id: str, event: dict[str, Any], *, cap: int) -> int:
        """Store one event under the job's next sequence number and return it; beyond
        ``cap`` events the oldest are dropped (readers get one marker in their place)."""
        with self._tx() as conn:
            seq = conn.execute("UPDATE jobs SET last_sequence = last_sequence + 1 WHERE id = ? "
                               "RETURNING last_sequence", (job_id,)).fetchone()[0]
            event = {**event, "sequence": seq, "job_id": job_id}
            conn.execute("INSERT INTO job_events (job_id, sequence, body) VALUES (?, ?, ?)",
                         (job_id, seq, json.dumps(event, ensure_ascii=False)))
            if cap and seq > cap:
                conn.execute("DELETE FROM job_events WHERE job_id = ? AND sequence <= ?",
                             (job_id, seq - cap))
                conn.execute("UPDATE jobs SET dropped_through = ? WHERE id = ?",
                             (seq - cap, job_id))
        return seq

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with a sequence above ``after``, in order; a marker event (carrying the
        last dropped sequence number) stands for the dropped ones."""
        with self._lock:
            dropped = self._conn.execute("SELECT dropped_through FROM jobs WHERE id = ?",
                                         (job_id,)).fetchone()
            rows = self._conn.execute(
                "SELECT body FROM job_events WHERE job_id = ? AND sequence > ? "
                "ORDER BY sequence LIMIT ?", (job_id, after, limit)).fetchall()
        out: list[dict[str, Any]] = []
        through = dropped[0] if dropped else 0
        if through > after:
            out.append({"type": EVENTS_DROPPED, "job_id": job_id, "sequence": through,
                        "content": {"dropped_from": after + 1, "dropped_through": through}})
        out.extend(json.loads(r[0]) for r in rows)
        return out
