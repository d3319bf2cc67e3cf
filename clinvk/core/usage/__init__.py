"""Who used what: the usage ledger (one row per finished run) and per-key budgets.

* :mod:`clinvk.core.usage.rows` — a ledger row and the query a caller asks;
* :mod:`clinvk.core.usage.ledger` — the table in the session store's database;
* :mod:`clinvk.core.usage.budgets` — budgets per key, counted in the rate limiter's storage.

The engine writes a row for every finished run, whichever edge started it; see
docs/usage.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clinvk.core.usage.budget_spec import Budget, parse_budget
    from clinvk.core.usage.budgets import BudgetKeeper
    from clinvk.core.usage.ledger import UsageLedger
    from clinvk.core.usage.rows import UsageQuery, UsageRow, parse_query

# Loaded on first use: the configuration reads only budget_spec, and the gunicorn master
# (which loads the configuration) needs none of the rest (docs/performance.md, memory).
_HOMES = {"Budget": "budget_spec", "parse_budget": "budget_spec", "BudgetKeeper": "budgets",
          "UsageLedger": "ledger", "UsageQuery": "rows", "UsageRow": "rows",
          "parse_query": "rows"}

__all__ = ["Budget", "BudgetKeeper", "UsageLedger", "UsageQuery", "UsageRow", "parse_budget",
           "parse_query"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
