"""A run's usage accounting: budget admission before it, a ledger row and charges after.

The engine is the one place every run passes through (native REST, the vendor dialects,
jobs, the CLI, MCP), so the ledger row is written here and no edge has to remember it.
Dry runs are neither admitted nor recorded. A ledger write that fails is logged and the
run's own result stands: usage accounting never fails a run that already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from clinvk.core.errors import BudgetExceeded, StoreError
from clinvk.core.usage import BudgetKeeper, UsageLedger, UsageRow

if TYPE_CHECKING:
    from clinvk.core.config import Config
    from clinvk.core.engine.requests import PreparedRun, PromptRequest, RunResult
    from clinvk.core.engine.slots import EngineHooks
    from clinvk.core.store import Store

log = logging.getLogger("clinvk.core.usage")


class UsageAccounting:
    """The ledger (when there is a store) and the budgets (server with budgets set)."""

    def __init__(self, config: Config, store: Store | None,
                 hooks: Callable[[], EngineHooks], *, server_mode: bool) -> None:
        self._hooks = hooks  # read at each use: the server installs its hooks after start
        self._store = store
        self._retention_days = config.session.usage_retention_days
        self._ledger: UsageLedger | None = None
        srv = config.server
        self.budgets = (BudgetKeeper(srv.budgets, srv.rate_limit_storage_uri)
                        if server_mode and srv.budgets else None)

    @property
    def ledger(self) -> UsageLedger | None:
        """The ledger over the store's usage table, opened on first use (None without a
        store; raises StoreError when it cannot be opened, and tries again next time)."""
        if self._ledger is None and self._store is not None:
            self._ledger = UsageLedger(self._store.usage, retention_days=self._retention_days)
        return self._ledger

    def admit(self, prepared: PreparedRun) -> None:
        """Raise ``BudgetExceeded`` when the caller's key has spent a budget."""
        if self.budgets is None or prepared.request.dry_run:
            return
        key_id = prepared.request.principal.key_id
        try:
            self.budgets.admit(key_id)
        except BudgetExceeded as exc:
            self._refused(key_id, exc, "run")
            raise

    def check(self, request: PromptRequest) -> None:
        """Raise ``BudgetExceeded`` when the caller's key has spent a budget, counting
        nothing (a job queued now is admitted, and counted, when it starts)."""
        if self.budgets is None or request.dry_run:
            return
        key_id = request.principal.key_id
        try:
            self.budgets.check(key_id)
        except BudgetExceeded as exc:
            self._refused(key_id, exc, "job")
            raise

    def _refused(self, key_id: str | None, exc: BudgetExceeded, what: str) -> None:
        """Tell metrics and the operator (by key id, never the key) which budget refused."""
        budget = exc.details["budget"]
        self._hooks().budget_rejected(key_id or "", budget)
        log.warning("budget %s of key id %s is spent: %s refused", budget, key_id, what)

    def account(self, prepared: PreparedRun, result: RunResult) -> None:
        """Write the ledger row of a finished run and charge its budgets."""
        if result.dry_run:
            return
        req = prepared.request
        row = UsageRow.of_run(
            key_id=req.principal.key_id, backend=result.backend, model=result.model,
            origin=req.origin, status=str(result.status), exit_code=result.exit_code,
            duration_ms=result.duration_ms, usage=result.token_usage,
            session_id=result.session_id)
        self._hooks().usage_recorded(row)
        if self.budgets is not None:
            self.budgets.charge(row.key_id, tokens=row.tokens, cost_usd=row.cost_usd)
        try:
            if self.ledger is not None:
                self.ledger.record(row)
        except StoreError as exc:
            log.error("usage row of a %s run not recorded: %s", row.backend, exc)
