"""The usage ledger: what a run cost, per key id, over the store's ``UsageTable``.

The rows live in the store (``usage_runs``, a numbered migration of each store dialect);
this module keeps the policy: which rows a caller may see (its own key id, or all for an
admin and local callers), how sums are shaped and ordered, and retention — rows older
than ``session.usage_retention_days`` are pruned when the ledger opens and then at most
hourly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clinvk.core.types import UsageGroup
from clinvk.core.usage.rows import SUM_NAMES, UsageQuery, UsageRow

if TYPE_CHECKING:
    from clinvk.core.store.interface import UsageTable

PRUNE_INTERVAL_SECS = 3600.0


class UsageLedger:
    """Append-only run ledger; readers filter by owner (clinvk.core.ownership)."""

    def __init__(self, table: UsageTable, *, retention_days: int = 90,
                 clock: Callable[[], float] | None = None) -> None:
        self.table = table
        self.retention_days = retention_days
        self._clock = clock or time.time
        self._prune_lock = threading.Lock()
        self._last_prune = 0.0
        self._maybe_prune()

    # -- writing ----------------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        self.table.insert(row)
        self._maybe_prune()

    def prune(self, older_than_seconds: float) -> int:
        """Delete rows that ended longer ago than the age; returns how many."""
        return self.table.delete_before(self._clock() - older_than_seconds)

    def _maybe_prune(self) -> None:
        now = self._clock()
        with self._prune_lock:
            if self.retention_days <= 0 or now - self._last_prune < PRUNE_INTERVAL_SECS:
                return
            self._last_prune = now
        self.prune(self.retention_days * 86400.0)

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def _scope(query: UsageQuery) -> dict[str, Any]:
        who = query.visible_to
        return {"since": query.since, "until": query.until, "owner": who.key_id,
                "sees_all": who.sees_all}

    def summary(self, query: UsageQuery) -> list[dict[str, Any]]:
        """Sums per group (one row for no grouping), largest token use first; grouped by
        day or hour, in time order."""
        width = len(query.group_by)
        out = []
        for row in self.table.sums(query.group_by, **self._scope(query)):
            group = dict(zip(query.group_by, row[:width], strict=True))
            sums = dict(zip(SUM_NAMES, row[width:], strict=True))
            if not sums["runs"]:
                continue  # no grouping over no rows: nothing to report
            for name in SUM_NAMES:
                if name != "cost_usd":
                    sums[name] = int(sums[name] or 0)
            if sums["cost_usd"] is not None:
                sums["cost_usd"] = float(sums["cost_usd"])
            out.append({**group, **sums})
        out.sort(key=lambda g: (-(g["input_tokens"] + g["output_tokens"]), -g["runs"],
                                [str(g[n]) for n in query.group_by]))
        if UsageGroup.DAY in query.group_by or UsageGroup.HOUR in query.group_by:
            when = UsageGroup.HOUR if UsageGroup.HOUR in query.group_by else UsageGroup.DAY
            out.sort(key=lambda g: str(g[when]))
        return out

    def recent(self, query: UsageQuery) -> list[UsageRow]:
        """The ``query.recent`` most recent rows in range, newest first."""
        if query.recent <= 0:
            return []
        return self.table.newest(query.recent, **self._scope(query))
