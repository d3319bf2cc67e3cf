"""Job listing rows as every store implementation reads them: only the columns of the
public job object plus the keyset, turned into that object in one step (no ``Job`` per row,
no parse of the request body a listing never shows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from clinvk.core.jobs.model import JobPage, public_job

__all__ = ["LISTED_COLUMNS", "job_page"]

LISTED_COLUMNS = ("id, kind, status, backend, session_id, created_at, started_at, "
                  "finished_at, last_sequence, error, result, webhook, created_epoch")


def _listed(row: Sequence[Any]) -> dict[str, Any]:
    (job_id, kind, status, backend, session_id, created_at, started_at, finished_at,
     events, error, result, webhook, _created_epoch) = row
    return public_job(
        job_id=job_id, kind=kind, status=status, backend=backend, session_id=session_id,
        created_at=created_at, started_at=started_at, finished_at=finished_at,
        events=events, error=error, result=json.loads(result) if result else None,
        webhook=json.loads(webhook) if webhook else None)


def job_page(rows: Sequence[Sequence[Any]], limit: int) -> JobPage:
    """The page from up to ``limit + 1`` rows in listing order (one more than the page says
    whether another page follows; its cursor is the keyset of the page's last row)."""
    page = rows[:limit]
    next_key = None
    if len(rows) > limit:
        last = page[-1]
        next_key = (float(last[-1]), str(last[0]))
    return JobPage([_listed(r) for r in page], next_key)
