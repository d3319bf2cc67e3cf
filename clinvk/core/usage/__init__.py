"""Who used what: the usage ledger (one row per finished run) and per-key budgets.

* :mod:`clinvk.core.usage.rows` — a ledger row and the query a caller asks;
* :mod:`clinvk.core.usage.ledger` — the table in the session store's database;
* :mod:`clinvk.core.usage.budgets` — budgets per key, counted in the rate limiter's storage.

The engine writes a row for every finished run, whichever edge started it; see
docs/usage.md.
"""

from clinvk.core.usage.budget_spec import Budget, parse_budget
from clinvk.core.usage.budgets import BudgetKeeper
from clinvk.core.usage.ledger import UsageLedger
from clinvk.core.usage.rows import UsageQuery, UsageRow, parse_query

__all__ = ["Budget", "BudgetKeeper", "UsageLedger", "UsageQuery", "UsageRow", "parse_budget",
           "parse_query"]
