"""Benchmark the session store at scale (SPEC §5: one page of 100,000 sessions in ms).

Builds a store with N sessions in one bulk transaction, then times the hot operations
(median and p95 over ``--repeats`` runs) and prints a markdown table for
``docs/performance.md``.

    python3 bench/bench_sessions.py --sessions 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinvk.events import TokenUsage, utc_timestamp  # noqa: E402
from clinvk.sessions import STATUSES, Session, SessionStore, derive_title  # noqa: E402

BACKENDS = ("claude", "codex", "gemini")


def build(store: SessionStore, n: int, rng: random.Random) -> list[str]:
    """Insert ``n`` realistic sessions spread over 90 days; return their ids."""
    now = time.time()
    ids: list[str] = []
    batch: list[Session] = []
    for i in range(n):
        sid = uuid.uuid4().hex
        ids.append(sid)
        created = now - rng.uniform(0, 90 * 86400)
        used = min(now, created + rng.uniform(0, 3600))
        tags = ["api"] if i % 2 else []
        if i % 10 == 0:
            tags.append("ci")
        prompt = f"task {i}: refactor module {rng.randrange(1000)} and add tests"
        batch.append(
            Session(
                id=sid,
                backend=BACKENDS[i % 3],
                backend_session_id=str(uuid.uuid4()),
                created_at=utc_timestamp(created),
                last_used=utc_timestamp(used),
                working_dir=f"/srv/repos/project-{i % 50}",
                model=None,
                initial_prompt=prompt,
                title=derive_title(prompt),
                status=STATUSES[rng.randrange(3)] if i % 97 else "paused",
                turn_count=rng.randrange(1, 20),
                token_usage=TokenUsage(rng.randrange(10**5), rng.randrange(10**4)),
                tags=tags,
                metadata={"source": "bench"},
            )
        )
        if len(batch) == 20000:
            store._insert_many(batch)
            batch = []
    if batch:
        store._insert_many(batch)
    return ids


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and p95 wall time in milliseconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * len(samples))) - 1)]
    return statistics.median(samples), p95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions to create")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--path", help="database file (default: a temporary directory)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.path) if args.path else Path(tmp) / "sessions.db"
        store = SessionStore(path)
        start = time.perf_counter()
        ids = build(store, args.sessions, rng)
        build_s = time.perf_counter() - start
        store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_mb = (
            sum(os.path.getsize(p) for p in (f"{path}", f"{path}-wal") if os.path.exists(p)) / 1e6
        )

        def pick() -> str:
            return rng.choice(ids)

        checks = [
            ("`list(limit=100)` first page", lambda: store.list(limit=100)),
            ("`list(backend=..., limit=100)`", lambda: store.list(backend="codex")),
            (
                "`list(backend=..., status=..., limit=100)`",
                lambda: store.list(backend="codex", status="error"),
            ),
            ("`list(status='paused')` (rare status)", lambda: store.list(status="paused")),
            ("`list(tag='ci', limit=100)` (tag on 10%)", lambda: store.list(tag="ci")),
            ("`list(tag='api', limit=100)` (tag on 50%)", lambda: store.list(tag="api")),
            (
                "`list(tag='api', backend=..., limit=100)`",
                lambda: store.list(tag="api", backend="codex"),
            ),
            (
                "`list(tag='api', working_dir=..., limit=100)`",
                lambda: store.list(tag="api", working_dir="/srv/repos/project-7"),
            ),
            (
                "`list(working_dir=..., limit=100)`",
                lambda: store.list(working_dir="/srv/repos/project-7"),
            ),
            (
                "`list(limit=100, offset=N/2)` deep page",
                lambda: store.list(offset=len(ids) // 2),
            ),
            (
                "`latest(backend=..., working_dir=...)`",
                lambda: store.latest(backend="gemini", working_dir="/srv/repos/project-7"),
            ),
            ("`get(full id)`", lambda: store.get(pick())),
            ("`get(8-char prefix)`", lambda: store.get(pick()[:8])),
            (
                "`record_turn(...)` (one write txn)",
                lambda: store.record_turn(pick(), usage=TokenUsage(10, 5), status="completed"),
            ),
            ("`busy()` acquire + release", lambda: store.busy(pick()).__enter__().release()),
            ("`count()`", store.count),
        ]
        rows = []
        for name, fn in checks:
            fn()  # warm up the page cache and statement cache
            median, p95 = timed(fn, args.repeats)
            rows.append((name, median, p95))

        print(
            f"sessions: {args.sessions:,}; build (bulk insert): {build_s:.1f} s; "
            f"database: {size_mb:.0f} MB; repeats: {args.repeats}"
        )
        print(
            f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"SQLite {__import__('sqlite3').sqlite_version}"
        )
        print()
        print("| operation | median ms | p95 ms |")
        print("|---|---:|---:|")
        for name, median, p95 in rows:
            print(f"| {name} | {median:.3f} | {p95:.3f} |")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
