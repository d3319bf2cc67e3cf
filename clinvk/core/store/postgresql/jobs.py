"""Durable jobs and their event logs in PostgreSQL, shared by every gateway and worker.

The same contract as the SQLite job tables: the cancel flag on the row is how the worker
that runs a job learns of a cancel that reached another worker (or gateway), and the event
log table lets any of them follow any job. A running job also records the node (host and
pid namespace) of its runner, so recovery on one host never judges another host's pids.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from clinvk.core.events import utc_timestamp
from clinvk.core.jobs.model import EVENTS_DROPPED, Job, JobKind, JobPage, JobStatus
from clinvk.core.store.job_rows import LISTED_COLUMNS, job_page
from clinvk.core.store.job_runners import DEFAULT_CLAIM_SECS, process_start_time, runner_gone
from clinvk.core.store.lease_owners import LEASE_NODE

if TYPE_CHECKING:
    from clinvk.core.store.postgresql.database import PostgresDatabase

__all__ = ["PostgresJobTable"]

_COLUMNS = ("id, kind, status, owner, backend, request, created_at, started_at, finished_at, "
            "session_id, result, error, cancel_requested, last_sequence, dropped_through, "
            "callback_url, webhook")
_FINISHED = [str(s) for s in JobStatus if s.finished]


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"], kind=JobKind(row["kind"]), status=JobStatus(row["status"]),
        owner=row["owner"], backend=row["backend"], request=json.loads(row["request"]),
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], session_id=row["session_id"],
        result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        cancel_requested=bool(row["cancel_requested"]), last_sequence=row["last_sequence"],
        dropped_through=row["dropped_through"], callback_url=row["callback_url"],
        webhook=json.loads(row["webhook"]) if row["webhook"] else None)


class PostgresJobTable:
    """Jobs and event logs over the store's pool; every method is one transaction."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def close(self) -> None:
        """Nothing of its own to close: the pool belongs to the store."""

    def _rows(self, action: str, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        def read(conn: Any) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(sql, params).fetchall()
        return self._db.run(action, read)

    def _count(self, action: str, sql: str, params: Any) -> int:
        return int(self._db.run(action, lambda conn: conn.execute(sql, params).rowcount))

    def create(self, kind: JobKind, request: dict[str, Any], *, owner: str | None,
               backend: str | None, max_queued: int,
               webhook: dict[str, Any] | None = None) -> Job | None:
        """A new queued job, or None when ``max_queued`` jobs are already waiting;
        ``webhook`` is its initial delivery record (its ``url`` the callback URL)."""
        job_id = "job_" + uuid.uuid4().hex
        now = time.time()

        def insert(conn: Any) -> bool:
            if max_queued:
                # One creator at a time counts the queue, so the cap holds across gateways.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('clinvk.jobs.queue'))")
                queued = conn.execute("SELECT count(*) FROM jobs WHERE status = %s",
                                      (JobStatus.QUEUED,)).fetchone()[0]
                if queued >= max_queued:
                    return False
            conn.execute(
                "INSERT INTO jobs (id, kind, status, owner, backend, request, created_at, "
                "created_epoch, callback_url, webhook) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (job_id, kind, JobStatus.QUEUED, owner, backend, json.dumps(request),
                 utc_timestamp(now), now, webhook["url"] if webhook else None,
                 json.dumps(webhook) if webhook else None))
            return True

        if not self._db.run("create a job", insert):
            return None
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        rows = self._rows("read a job", f"SELECT {_COLUMNS} FROM jobs WHERE id = %s",
                          (job_id,))
        return _job(rows[0]) if rows else None

    def list(self, *, owner: str | None, sees_all: bool, status: str | None = None,
             kind: str | None = None, backend: str | None = None, since: float | None = None,
             before: tuple[float, str] | None = None, limit: int = 50) -> JobPage:
        """Newest first; ``before`` is the (created_epoch, id) keyset of the last row seen.
        Each filter shape walks an index already in page order (owner's, status's or the
        creation index) from ``before`` on and stops after one page."""
        where, params = ["TRUE"], []
        if not sees_all:
            # Plain equality (IS NOT DISTINCT FROM would not use the owner index).
            where.append("owner IS NULL" if owner is None else "owner = %s")
            params.extend(() if owner is None else (owner,))
        for column, value in (("status", status), ("kind", kind), ("backend", backend)):
            if value:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("created_epoch >= %s")
            params.append(since)
        if before is not None:
            where.append("(created_epoch, id) < (%s, %s)")
            params.extend(before)
        sql = (f"SELECT {LISTED_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
               "ORDER BY created_epoch DESC, id DESC LIMIT %s")
        rows = self._db.run("list jobs",
                            lambda conn: conn.execute(sql, (*params, limit + 1)).fetchall())
        return job_page(rows, limit)

    def claim(self, job_id: str, pid: int, ttl_secs: float = DEFAULT_CLAIM_SECS) -> bool:
        """Take a queued job for process ``pid`` of this node to dispatch (it stays queued
        until :meth:`start`): only when no live runner holds it — a runner on another
        node counts as gone once its claim expired."""
        now = time.time()

        def take(conn: Any) -> bool:
            row = conn.execute("SELECT runner_pid, runner_start, runner_node, claim_expires "
                               "FROM jobs WHERE id = %s AND status = %s FOR UPDATE",
                               (job_id, JobStatus.QUEUED)).fetchone()
            if row is None or not runner_gone(row[0], row[1], row[3], now,
                                              local=row[2] in (None, LEASE_NODE)):
                return False
            return conn.execute(
                "UPDATE jobs SET runner_pid = %s, runner_start = %s, runner_node = %s, "
                "claim_expires = %s WHERE id = %s",
                (pid, process_start_time(pid), LEASE_NODE, now + ttl_secs, job_id)
            ).rowcount == 1

        return bool(self._db.run("claim a job", take))

    def _mine(self) -> str:
        return "runner_pid = %s AND runner_start IS NOT DISTINCT FROM %s AND runner_node = %s"

    def renew_claim(self, job_id: str, pid: int, ttl_secs: float) -> bool:
        """The runner's heartbeat; False once the claim is no longer this process's."""
        return self._count("renew a job claim",
            f"UPDATE jobs SET claim_expires = %s WHERE id = %s AND {self._mine()} "
            "AND status = ANY(%s)",
            (time.time() + ttl_secs, job_id, pid, process_start_time(pid), LEASE_NODE,
             [JobStatus.QUEUED, JobStatus.RUNNING])) == 1

    def start(self, job_id: str, pid: int) -> bool:
        """queued -> running, by the process holding the claim, once its run started."""
        return self._count("start a job",
            f"UPDATE jobs SET status = %s, started_at = %s WHERE id = %s AND status = %s "
            f"AND {self._mine()}",
            (JobStatus.RUNNING, utc_timestamp(), job_id, JobStatus.QUEUED, pid,
             process_start_time(pid), LEASE_NODE)) == 1

    def set_session(self, job_id: str, session_id: str | None, backend: str | None) -> None:
        self._count("update a job", "UPDATE jobs SET session_id = coalesce(%s, session_id), "
                    "backend = coalesce(%s, backend) WHERE id = %s",
                    (session_id, backend, job_id))

    def finish(self, job_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: str | None = None, only_from: tuple[JobStatus, ...] = ()) -> bool:
        sql = ("UPDATE jobs SET status = %s, finished_at = %s, "
               "result = coalesce(%s, result), error = coalesce(%s, error) WHERE id = %s")
        params: list[Any] = [status, utc_timestamp(),
                             json.dumps(result) if result is not None else None, error, job_id]
        if only_from:
            sql += " AND status = ANY(%s)"
            params.append([str(s) for s in only_from])
        return self._count("finish a job", sql, params) == 1

    def set_webhook(self, job_id: str, record: dict[str, Any]) -> None:
        """Replace the job's webhook delivery record (after each attempt)."""
        self._count("record a webhook attempt", "UPDATE jobs SET webhook = %s WHERE id = %s",
                    (json.dumps(record), job_id))

    def request_cancel(self, job_id: str) -> None:
        self._count("cancel a job", "UPDATE jobs SET cancel_requested = TRUE WHERE id = %s",
                    (job_id,))

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._rows("read a job", "SELECT cancel_requested FROM jobs WHERE id = %s",
                          (job_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def delete(self, job_id: str) -> None:
        self._count("delete a job", "DELETE FROM jobs WHERE id = %s", (job_id,))  # + events

    def orphaned_running(self) -> list[str]:
        """Running jobs whose runner is gone: its claim expired (any node), or its process
        on this node is (dead, or pid reused)."""
        rows = self._rows(
            "read running jobs", "SELECT id, runner_pid, runner_start, runner_node, "
            "claim_expires FROM jobs WHERE status = %s", (JobStatus.RUNNING,))
        now = time.time()
        return [r["id"] for r in rows
                if runner_gone(r["runner_pid"], r["runner_start"], r["claim_expires"], now,
                               local=r["runner_node"] in (None, LEASE_NODE))]

    def queued(self) -> list[str]:
        rows = self._rows("read queued jobs", "SELECT id FROM jobs WHERE status = %s "
                          "ORDER BY created_epoch", (JobStatus.QUEUED,))
        return [r["id"] for r in rows]

    def prune(self, *, max_age_secs: float, max_count: int) -> int:
        """Drop finished jobs older than the age or beyond the newest ``max_count``."""
        return self._count(
            "prune jobs",
            "DELETE FROM jobs WHERE status = ANY(%(done)s) AND (created_epoch < %(cutoff)s "
            "OR id NOT IN (SELECT id FROM jobs WHERE status = ANY(%(done)s) "
            "ORDER BY created_epoch DESC LIMIT %(keep)s))",
            {"done": _FINISHED, "cutoff": time.time() - max_age_secs, "keep": max_count})

    def append_event(self, job_id: str, event: dict[str, Any], *, cap: int) -> int:
        """Store one event under the job's next sequence number and return it; beyond
        ``cap`` events the oldest are dropped (readers get one marker in their place)."""
        def append(conn: Any) -> int:
            seq = conn.execute("UPDATE jobs SET last_sequence = last_sequence + 1 "
                               "WHERE id = %s RETURNING last_sequence", (job_id,)).fetchone()[0]
            body = json.dumps({**event, "sequence": seq, "job_id": job_id}, ensure_ascii=False)
            conn.execute("INSERT INTO job_events (job_id, sequence, body) VALUES (%s, %s, %s)",
                         (job_id, seq, body))
            if cap and seq > cap:
                conn.execute("DELETE FROM job_events WHERE job_id = %s AND sequence <= %s",
                             (job_id, seq - cap))
                conn.execute("UPDATE jobs SET dropped_through = %s WHERE id = %s",
                             (seq - cap, job_id))
            return int(seq)

        return self._db.run("append a job event", append)

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with a sequence above ``after``, in order; a marker event (carrying the
        last dropped sequence number) stands for the dropped ones."""
        def read(conn: Any) -> tuple[Any, list[Any]]:
            dropped = conn.execute("SELECT dropped_through FROM jobs WHERE id = %s",
                                   (job_id,)).fetchone()
            rows = conn.execute("SELECT body FROM job_events WHERE job_id = %s AND "
                                "sequence > %s ORDER BY sequence LIMIT %s",
                                (job_id, after, limit)).fetchall()
            return dropped, rows

        dropped, rows = self._db.run("read job events", read)
        out: list[dict[str, Any]] = []
        through = dropped[0] if dropped else 0
        if through > after:
            out.append({"type": EVENTS_DROPPED, "job_id": job_id, "sequence": through,
                        "content": {"dropped_from": after + 1, "dropped_through": through}})
        out.extend(json.loads(r[0]) for r in rows)
        return out
