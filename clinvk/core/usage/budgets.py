"""Budgets per API key: runs, tokens and cost per window, shared by every worker.

A budget is written ``METRIC AMOUNT/WINDOW`` — ``runs 30/minute``, ``tokens 2000000/day``,
``cost_usd 5/day``, ``runs 3 per 2 seconds`` — several joined with ``;``. The counters
are fixed windows of the ``limits`` library in the rate limiter's storage
(``server.rate_limit_storage_uri``: memory, or redis for several workers and gateways),
so a window has one exact reset time to put in ``Retry-After``.

Protocol: :meth:`BudgetKeeper.check` when a job is queued (refuses a key with a spent
budget, counts nothing); :meth:`BudgetKeeper.admit` before a run (refuses a key whose tokens or cost
counter is spent, then counts the run itself, atomically across workers);
:meth:`BudgetKeeper.charge` after it with the tokens and cost the CLI reported. A run in
flight always finishes, so tokens and cost may overshoot by what the runs in flight use.
Cost is counted in micro-dollars (the counters are integers). If the storage fails, the
budget is not enforced for that run and a warning is logged (fail open, as the limiter).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from clinvk.core.errors import BudgetExceeded
from clinvk.core.types import BudgetMetric, values

log = logging.getLogger("clinvk.core.usage")

METRICS: tuple[str, ...] = values(BudgetMetric)
DEFAULT_ENTRY = "default"
MICRO = 1_000_000
_ITEM = re.compile(
    r"\s*(?P<metric>[a-z_]+)\s+(?P<amount>\d+(?:\.\d+)?)\s*(?:/|\s+per\s+)\s*"
    r"(?P<window>(?:\d+\s+)?(?:second|minute|hour|day)s?)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """One limit: ``amount`` of ``metric`` per window (``item`` counts in storage units)."""

    metric: str
    amount: float
    window: str
    item: RateLimitItem

    @property
    def name(self) -> str:
        shown = f"{self.amount:g}"
        return f"{self.metric} {shown}/{self.window}"


def parse_budget(text: str) -> tuple[Budget, ...]:
    """``runs 30/minute; cost_usd 5/day`` -> budgets; raises ValueError with the reason."""
    budgets = []
    for part in (p for p in text.split(";") if p.strip()):
        match = _ITEM.fullmatch(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not METRIC AMOUNT/WINDOW, e.g. "
                             "'runs 30/minute' or 'tokens 100000 per 2 hours'")
        metric = match["metric"].lower()
        if metric not in METRICS:
            raise ValueError(f"budget metric must be one of {', '.join(METRICS)}, "
                             f"got {metric!r}")
        amount = float(match["amount"])
        if metric != BudgetMetric.COST_USD and not amount.is_integer():
            raise ValueError(f"{metric} must be a whole number, got {match['amount']}")
        window = " ".join(match["window"].lower().split())
        units = round(amount * MICRO) if metric == BudgetMetric.COST_USD else int(amount)
        if units < 1:
            raise ValueError(f"{part.strip()!r}: the amount must be positive")
        shape = parse(f"1 per {window}")
        item = type(shape)(units, shape.multiples, namespace="clinvk-budget")
        budgets.append(Budget(metric, amount, window, item))
    return tuple(budgets)


def check_budgets(entries: Mapping[str, str]) -> str | None:
    """The config check of ``server.budgets``: names and every budget text."""
    for name, text in entries.items():
        if name != DEFAULT_ENTRY and not re.fullmatch(r"[0-9a-f]{24}", name):
            return (f"entry {name[:30]!r} must be 'default' or a key id (24 hex digits, as "
                    "`clinvk keys id` prints), never the key itself")
        try:
            parse_budget(text)
        except ValueError as exc:
            return f"entry {name!r}: {exc}"
    return None


class BudgetKeeper:
    """Admission and charging of budgets for the keys of one gateway."""

    def __init__(self, entries: Mapping[str, str], storage_uri: str) -> None:
        self.budgets = {name: parse_budget(text) for name, text in entries.items()}
        options = {}
        if storage_uri.startswith(("redis://", "rediss://", "redis+")):
            options = {"socket_connect_timeout": 2, "socket_timeout": 2}
        self.limiter = FixedWindowRateLimiter(storage_from_string(storage_uri, **options))

    def for_key(self, key_id: str | None) -> tuple[Budget, ...]:
        """A key's own entry replaces the default one; callers without a key have none."""
        if key_id is None:
            return ()
        return self.budgets.get(key_id, self.budgets.get(DEFAULT_ENTRY, ()))

    def admit(self, key_id: str | None) -> None:
        """Count one run, or raise ``BudgetExceeded`` naming the budget that is spent."""
        budgets = self.for_key(key_id)
        if not budgets:
            return
        assert key_id is not None
        try:
            for budget in budgets:
                if budget.metric != BudgetMetric.RUNS:
                    stats = self.limiter.get_window_stats(budget.item, key_id, budget.metric)
                    if stats.remaining <= 0:
                        self._refuse(budget, stats.reset_time)
            for budget in budgets:
                if budget.metric == BudgetMetric.RUNS and not self.limiter.hit(
                        budget.item, key_id, budget.metric):
                    stats = self.limiter.get_window_stats(budget.item, key_id, budget.metric)
                    self._refuse(budget, stats.reset_time)
        except BudgetExceeded:
            raise
        except Exception as exc:  # storage down: the run goes ahead, the operator is told
            log.warning("budget storage failed, budgets not enforced for this run: %s",
                        type(exc).__name__)

    def check(self, key_id: str | None) -> None:
        """Raise ``BudgetExceeded`` when any of the key's budgets is spent, counting
        nothing: a queued job is refused at submit, and counted when it starts."""
        try:
            for budget in self.for_key(key_id):
                assert key_id is not None
                stats = self.limiter.get_window_stats(budget.item, key_id, budget.metric)
                if stats.remaining <= 0:
                    self._refuse(budget, stats.reset_time)
        except BudgetExceeded:
            raise
        except Exception as exc:  # storage down: fail open, as admit() does
            log.warning("budget storage failed, budgets not checked for this job: %s",
                        type(exc).__name__)

    def charge(self, key_id: str | None, *, tokens: int, cost_usd: float | None) -> None:
        """Add a finished run's tokens and cost to the key's counters."""
        spent = {BudgetMetric.TOKENS: max(tokens, 0),
                 BudgetMetric.COST_USD: round(max(cost_usd or 0.0, 0.0) * MICRO)}
        try:
            for budget in self.for_key(key_id):
                amount = spent.get(BudgetMetric(budget.metric), 0)
                if amount > 0:
                    assert key_id is not None
                    self.limiter.hit(budget.item, key_id, budget.metric, cost=amount)
        except Exception as exc:
            log.warning("budget storage failed, a run's usage was not counted: %s",
                        type(exc).__name__)

    @staticmethod
    def _refuse(budget: Budget, reset_time: float) -> None:
        wait = max(1, math.ceil(reset_time - time.time()))
        raise BudgetExceeded(
            f"budget exceeded: {budget.name} for this API key; retry after {wait} s "
            "(Retry-After)", budget=budget.name, retry_after=wait)
