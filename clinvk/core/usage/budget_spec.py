"""Budget texts: ``METRIC AMOUNT/WINDOW`` parsed and checked (the config check uses this).

``runs 30/minute``, ``tokens 2000000/day``, ``cost_usd 5/day``, ``runs 3 per 2 seconds`` —
several joined with ``;``. Counting them is :mod:`clinvk.core.usage.budgets`; this module
stays free of the rate-limit library so that loading a config does not load it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from clinvk.core.types import BudgetMetric, values

METRICS: tuple[str, ...] = values(BudgetMetric)
DEFAULT_ENTRY = "default"
MICRO = 1_000_000
_ITEM = re.compile(
    r"\s*(?P<metric>[a-z_]+)\s+(?P<amount>\d+(?:\.\d+)?)\s*(?:/|\s+per\s+)\s*"
    r"(?P<window>(?:\d+\s+)?(?:second|minute|hour|day)s?)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """One limit: ``amount`` of ``metric`` per ``window`` (``units``: the counter's integer
    amount, micro-dollars for cost)."""

    metric: str
    amount: float
    window: str
    units: int

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
        budgets.append(Budget(metric, amount, window, units))
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
