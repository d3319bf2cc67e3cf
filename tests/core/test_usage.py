"""The usage ledger and budgets at the engine: real fake-CLI runs, a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from support.engine import make_engine, request

from clinvk.core.errors import BudgetExceeded, InvalidRequest
from clinvk.core.ownership import Principal
from clinvk.core.store.migrations import migrations
from clinvk.core.store.sqlite import SqliteStore
from clinvk.core.store.sqlite.database import split_script
from clinvk.core.types import RunOrigin, StoreDialect
from clinvk.core.usage import UsageLedger, UsageRow, parse_budget, parse_query
from clinvk.core.usage.budget_spec import check_budgets
from clinvk.core.usage.budgets import counter_item

KEY_A = "a" * 24
KEY_B = "b" * 24


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_reported_usage_lands_in_the_ledger(env: Path, backend: str) -> None:
    engine = make_engine(env)
    result = engine.run(request(env, backend, principal=Principal(KEY_A),
                                origin=RunOrigin.API))
    assert result.ok and result.token_usage.total_tokens > 0
    ledger = engine.accounting.ledger
    assert ledger is not None
    [row] = ledger.recent(parse_query(recent=10))
    assert (row.key_id, row.backend, row.origin, row.status) == (KEY_A, backend, "api", "ok")
    assert row.input_tokens == result.token_usage.input_tokens
    assert row.output_tokens == result.token_usage.output_tokens
    assert row.cached_tokens == result.token_usage.cached_tokens
    assert row.cost_usd == result.token_usage.cost_usd
    assert (row.cost_usd is not None) == (backend == "claude")  # only claude reports cost
    assert row.model == result.model and row.session_id == result.session_id
    assert row.duration_ms == result.duration_ms


def test_ephemeral_and_failed_runs_count_dry_runs_do_not(env: Path) -> None:
    engine = make_engine(env, **{"backends.gemini.env": {"FAKE_CLI_EXIT_CODE": "3"}})
    engine.run(request(env, "codex", ephemeral=True))
    engine.run(request(env, "claude", dry_run=True))
    engine.run(request(env, "gemini"))  # fails
    assert engine.accounting.ledger is not None
    rows = engine.accounting.ledger.recent(parse_query(recent=10))
    assert [(r.backend, r.status, r.session_id is None) for r in rows] == [
        ("gemini", "failed", False), ("codex", "ok", True)]
    assert rows[1].origin == "cli"


def _row(at: float, key: str | None, backend: str, tokens: int, status: str = "ok") -> UsageRow:
    return UsageRow(at=at, key_id=key, backend=backend, model="m", origin="api", status=status,
                    exit_code=0, duration_ms=10, input_tokens=tokens, output_tokens=1,
                    cost_usd=0.5 if backend == "claude" else None)


def test_summary_groups_filters_and_hides_other_keys(tmp_path: Path) -> None:
    ledger = UsageLedger(SqliteStore(tmp_path / "s.db").usage)
    day = 1_796_601_600.0  # 2026-12-07T00:00:00Z
    for row in (_row(day + 10, KEY_A, "claude", 100), _row(day + 20, KEY_A, "codex", 10),
                _row(day + 86400, KEY_B, "claude", 5, "failed"), _row(day + 30, None, "gemini", 1)):
        ledger.record(row)
    everyone = ledger.summary(parse_query(group_by="key,backend"))
    assert [(g["key"], g["backend"], g["runs"]) for g in everyone] == [
        (KEY_A, "claude", 1), (KEY_A, "codex", 1), (KEY_B, "claude", 1), (None, "gemini", 1)]
    mine = ledger.summary(parse_query(group_by="day", visible_to=Principal(KEY_A)))
    assert mine == [{"day": "2026-12-07", "runs": 2, "failed_runs": 0, "input_tokens": 110,
                     "output_tokens": 2, "cached_tokens": 0, "cost_usd": 0.5,
                     "duration_ms": 20}]
    admin = ledger.summary(parse_query(since="2026-12-08", visible_to=Principal(KEY_B, True)))
    assert [(g["runs"], g["failed_runs"]) for g in admin] == [(1, 1)]
    assert ledger.summary(parse_query(until="2026-12-01")) == []
    assert [r.key_id for r in ledger.recent(parse_query(recent=2, visible_to=Principal(KEY_B)))
            ] == [KEY_B]


def test_old_rows_are_pruned_by_retention(tmp_path: Path) -> None:
    ledger = UsageLedger(SqliteStore(tmp_path / "s.db").usage)
    ledger.record(_row(time.time() - 10 * 86400, KEY_A, "codex", 1))
    ledger.record(_row(time.time(), KEY_A, "codex", 2))
    reopened = UsageLedger(SqliteStore(tmp_path / "s.db").usage, retention_days=5)
    assert [r.input_tokens for r in reopened.recent(parse_query(recent=5))] == [2]


@pytest.mark.parametrize("old_ledger_table", [False, True])
def test_a_schema_v4_store_migrates_to_the_usage_table(tmp_path: Path,
                                                       old_ledger_table: bool) -> None:
    """A store from before the ledger was a migration gains the table; one whose ledger
    had created it on first use keeps its rows."""
    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in migrations(StoreDialect.SQLITE)[:4]:
        for statement in split_script(step.script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    if old_ledger_table:
        for statement in split_script(migrations(StoreDialect.SQLITE)[4].script):
            conn.execute(statement)
        conn.execute("INSERT INTO usage_runs VALUES ('r1', ?, '2026-12-07', '2026-12-07T09:00Z', "
                     "?, 'claude', 'm', 'api', 'ok', 0, 5, 7, 3, 0, 0.25, NULL)",
                     (time.time(), KEY_A))
    conn.close()
    store = SqliteStore(path)
    ledger = UsageLedger(store.usage)
    ledger.record(_row(time.time(), KEY_B, "codex", 11))
    got = {(r.key_id, r.input_tokens) for r in ledger.recent(parse_query(recent=10))}
    assert got == ({(KEY_A, 7), (KEY_B, 11)} if old_ledger_table else {(KEY_B, 11)})
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == len(migrations(StoreDialect.SQLITE)) >= 5


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"), ({"until": ""}, "until"),
    ({"group_by": "key,colour"}, "group_by"), ({"recent": "many"}, "recent"),
    ({"recent": 501}, "recent"), ({"since": "2026-12-08", "until": "2026-12-07"}, "until"),
])
def test_bad_query_names_the_field(params: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_query(**params)
    assert caught.value.field == field


def test_budget_text_parses_and_bad_text_is_explained() -> None:
    runs, cost = parse_budget("runs 3 per 2 seconds; cost_usd 0.5/day")
    assert (runs.metric, runs.units, counter_item(runs).get_expiry()) == ("runs", 3, 2)
    assert (cost.name, cost.units, counter_item(cost).amount) == ("cost_usd 0.5/day", 500_000,
                                                                    500_000)
    assert "METRIC AMOUNT/WINDOW" in (check_budgets({"default": "lots"}) or "")
    assert "runs must be a whole number" in (check_budgets({"default": "runs 1.5/hour"}) or "")
    assert "never the key" in (check_budgets({"sk-secret": "runs 1/hour"}) or "")
    assert "metric must be one of" in (check_budgets({KEY_A: "calls 1/hour"}) or "")
    assert check_budgets({"default": "tokens 10/minute", KEY_A: ""}) is None


def test_budget_stops_the_nth_run_and_lets_it_through_after_the_window(env: Path) -> None:
    engine = make_engine(env, server_mode=True, **{
        "server.budgets": {"default": "runs 2 per 1 second", KEY_B: "tokens 1/minute"}})
    mine = Principal(KEY_A)
    for _ in range(2):
        assert engine.run(request(env, "codex", principal=mine)).ok
    with pytest.raises(BudgetExceeded) as caught:
        engine.run(request(env, "codex", principal=mine))
    assert caught.value.details["budget"] == "runs 2/1 second"
    assert caught.value.retry_after == 1
    assert engine.run(request(env, "codex", principal=Principal(KEY_B))).ok  # own budget
    with pytest.raises(BudgetExceeded, match="tokens 1/minute"):
        engine.run(request(env, "codex", principal=Principal(KEY_B)))
    assert engine.run(request(env, "codex")).ok  # local callers have no budget
    time.sleep(1.1)
    assert engine.run(request(env, "codex", principal=mine)).ok
    assert engine.accounting.ledger is not None
    assert len(engine.accounting.ledger.recent(parse_query(recent=50))) == 5
