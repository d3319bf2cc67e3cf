"""Webhooks: when a job finishes, POST the job object to the URL its submit named.

Protocol (docs/jobs.md): the body is the job object as JSON; ``X-Clinvk-Timestamp`` is the
send time in Unix seconds and ``X-Clinvk-Signature`` is ``sha256=`` + the hex HMAC-SHA256,
keyed with ``server.jobs_webhook_secret``, of ``timestamp + "." + body``. Any 2xx answer
is delivery; anything else (a redirect too: none is followed) is retried with exponential
backoff until the configured attempts are spent. Every attempt is written to the job's
``webhook`` record.

Safety: only hosts on ``server.jobs_webhook_allowed_hosts`` are ever called (an empty list
calls nothing), only over http or https, never through a proxy, each attempt bounded by a
timeout. Deliveries run on their own few threads, so a slow receiver never holds a job slot.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import utc_timestamp
from clinvk.core.store.interface import JobTable
from clinvk.core.types import WebhookState

log = logging.getLogger("clinvk.jobs.webhooks")

SCHEMES = ("http", "https")
SIGNATURE_HEADER = "X-Clinvk-Signature"
TIMESTAMP_HEADER = "X-Clinvk-Timestamp"


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: tuple[str, ...] = ()
    secret: str = ""
    attempts: int = 5
    backoff_secs: float = 2.0
    timeout_secs: float = 10.0
    threads: int = 2

    def check(self, url: str) -> str:
        """The URL if a submit may name it; else a 400 naming ``callback_url``."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise InvalidRequest("must be an http:// or https:// URL", field="callback_url")
        if parts.username is not None or parts.password is not None:
            raise InvalidRequest("must not carry credentials (requests are signed instead)",
                                 field="callback_url")
        try:
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError:
            raise InvalidRequest("has an invalid port", field="callback_url") from None
        if not self.allowed_hosts:
            raise InvalidRequest("webhooks are off on this server (server."
                                 "jobs_webhook_allowed_hosts is empty)", field="callback_url")
        if parts.hostname.lower() not in {h.lower() for h in self.allowed_hosts}:
            raise InvalidRequest(f"host {parts.hostname!r} is not on the server's webhook "
                                 "allow-list (server.jobs_webhook_allowed_hosts)",
                                 field="callback_url")
        if not self.secret:
            raise InvalidRequest("webhooks need a signing secret on the server "
                                 "(server.jobs_webhook_secret)", field="callback_url")
        return url

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: backoff, 2×backoff, 4×backoff …"""
        return self.backoff_secs * (2 ** (attempt - 1))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def new_record(url: str) -> dict[str, Any]:
    """The delivery record of a job that has not finished yet."""
    return {"url": url, "state": str(WebhookState.PENDING), "attempts": 0,
            "last_status": None, "last_error": None, "delivered_at": None}


def post(url: str, body: bytes, headers: dict[str, str], timeout: float
         ) -> tuple[int | None, str | None]:
    """One attempt: (HTTP status, error text). No proxy, no redirect, bounded time."""
    parts = urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read(64 * 1024)
    except TimeoutError:
        return None, f"timed out after {timeout:g} s"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return response.status, None
    if 300 <= response.status < 400:
        return response.status, f"HTTP {response.status}: redirects are not followed"
    return response.status, f"HTTP {response.status}"


class WebhookSender:
    """A due-time queue of deliveries worked by a few daemon threads (started on first use,
    so a forked server worker starts its own)."""

    def __init__(self, policy: WebhookPolicy, store: JobTable) -> None:
        self.policy = policy
        self.store = store
        self._due: list[tuple[float, int, str, int]] = []  # (due, tiebreak, job id, attempt)
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def finished(self, job_id: str) -> None:
        """A job reached its final status: deliver its webhook, if it has one."""
        self._schedule(job_id, 1, time.monotonic())

    def shutdown(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _schedule(self, job_id: str, attempt: int, due: float) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._due, (due, next(self._order), job_id, attempt))
            while len(self._threads) < self.policy.threads:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"clinvk-webhook-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            self._cond.notify()

    def _next(self) -> tuple[str, int] | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    _due, _order, job_id, attempt = heapq.heappop(self._due)
                    return job_id, attempt
                self._cond.wait(self._due[0][0] - now if self._due else None)
            return None

    def _work(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._attempt(*item)
            except Exception:  # one bad delivery must not end the thread
                log.exception("webhook delivery of job %s crashed", item[0])

    def _attempt(self, job_id: str, attempt: int) -> None:
        job = self.store.get(job_id)
        if job is None or not job.callback_url:
            return  # deleted meanwhile, or never asked for one
        body = json.dumps(job.to_dict(webhook=False), ensure_ascii=False,
                          separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "clinvk-webhook",
                   TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(self.policy.secret, timestamp, body),
                   "X-Clinvk-Job-Id": job_id, "X-Clinvk-Attempt": str(attempt)}
        status, error = post(job.callback_url, body, headers, self.policy.timeout_secs)
        record = {**(job.webhook or new_record(job.callback_url)), "attempts": attempt,
                  "last_status": status, "last_error": error}
        if error is None:
            record.update(state=str(WebhookState.DELIVERED), delivered_at=utc_timestamp())
        elif attempt >= self.policy.attempts:
            record["state"] = str(WebhookState.FAILED)
        self.store.set_webhook(job_id, record)
        if error is not None:
            log.warning("webhook of job %s, attempt %d/%d: %s", job_id, attempt,
                        self.policy.attempts, error)
            if attempt < self.policy.attempts:
                self._schedule(job_id, attempt + 1,
                               time.monotonic() + self.policy.delay(attempt))
