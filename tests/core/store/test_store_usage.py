"""The usage ledger's table on every store implementation: the same sums, the same
visibility and the same retention on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from clinvk.core.ownership import Principal
from clinvk.core.store import Store
from clinvk.core.usage import UsageLedger, UsageRow, parse_query

ALICE, BOB = "a" * 24, "b" * 24
MIDNIGHT = 1_796_601_600.0  # 2026-12-07T00:00:00Z


def _run(at: float, key: str | None, backend: str, tokens: int, *, status: str = "ok",
         cost: float | None = None) -> UsageRow:
    return UsageRow(at=at, key_id=key, backend=backend, model="m", origin="api", status=status,
                    exit_code=0 if status == "ok" else 1, duration_ms=7,
                    input_tokens=tokens, output_tokens=2, cached_tokens=1, cost_usd=cost)


def test_sums_per_group_are_exact_numbers_and_hide_other_keys(store: Store) -> None:
    ledger = UsageLedger(store.usage)
    for row in (_run(MIDNIGHT + 5, ALICE, "claude", 40, cost=0.25),
                _run(MIDNIGHT + 3600, ALICE, "claude", 2, status="failed", cost=0.5),
                _run(MIDNIGHT + 7200, BOB, "codex", 9),
                _run(MIDNIGHT + 86400, None, "gemini", 1)):
        ledger.record(row)
    by_backend = ledger.summary(parse_query(group_by="backend"))
    claude = next(g for g in by_backend if g["backend"] == "claude")
    assert claude == {"backend": "claude", "runs": 2, "failed_runs": 1, "input_tokens": 42,
                      "output_tokens": 4, "cached_tokens": 2, "cost_usd": 0.75,
                      "duration_ms": 14}
    assert all(type(g["input_tokens"]) is int for g in by_backend)  # not Decimal
    alice = ledger.summary(parse_query(group_by="hour", visible_to=Principal(ALICE)))
    assert [(g["hour"], g["runs"]) for g in alice] == [
        ("2026-12-07T00:00Z", 1), ("2026-12-07T01:00Z", 1)]
    assert ledger.summary(parse_query(visible_to=Principal("c" * 24))) in (
        [], [{"runs": 0, "failed_runs": 0, "input_tokens": 0, "output_tokens": 0,
              "cached_tokens": 0, "cost_usd": None, "duration_ms": 0}])
    everyone = ledger.summary(parse_query(group_by="key", visible_to=Principal(BOB, True)))
    assert sorted(g["runs"] for g in everyone) == [1, 1, 2]
    newest = ledger.recent(parse_query(recent=2))
    assert [r.backend for r in newest] == ["gemini", "codex"]
    assert newest[1].key_id == BOB and newest[1].cached_tokens == 1


def test_retention_drops_old_rows(store: Store, location: str) -> None:
    from support.stores import open_at

    UsageLedger(store.usage).record(_run(time.time() - 8 * 86400, ALICE, "codex", 1))
    UsageLedger(store.usage).record(_run(time.time(), ALICE, "codex", 3))
    kept = UsageLedger(open_at(location).usage, retention_days=7)
    assert [r.input_tokens for r in kept.recent(parse_query(recent=9))] == [3]


def test_a_run_row_queues_behind_the_same_process_session_write(tmp_path) -> None:
    """The ledger writes through the store's own connections and write lock: a row
    written while another thread's session transaction runs waits for it, instead of
    meeting SQLite's busy handler (which gives up after busy_timeout)."""
    import threading

    from clinvk.core.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "sessions.db", busy_timeout=0.05)
    session = store.create(backend="claude", working_dir=str(tmp_path))
    inside, release = threading.Event(), threading.Event()

    def hold_a_write() -> None:
        with store._write() as conn:
            conn.execute("UPDATE sessions SET title = 'held' WHERE id = ?", (session.id,))
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold_a_write)
    holder.start()
    assert inside.wait(5)
    threading.Timer(0.3, release.set).start()  # six busy timeouts later
    try:
        UsageLedger(store.usage).record(_run(time.time(), ALICE, "claude", 5))
    finally:
        release.set()
        holder.join()
    assert [r.input_tokens for r in UsageLedger(store.usage).recent(
        parse_query(recent=5))] == [5]
    store.close()
