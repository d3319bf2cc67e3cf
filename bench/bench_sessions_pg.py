"""Benchmark the PostgreSQL store at scale: list, get, count and writes over N sessions
(docs/performance.md, "The PostgreSQL store").

The same realistic sessions as ``bench_sessions.py`` (its ``build``), inserted into a
PostgreSQL database, then the hot operations timed through ``PostgresStore`` (median, p95
and p99 after one warm-up call). Without ``--url`` a private PostgreSQL server is started
for the run (the test suite's helper: the Debian package, a free port, a temp dir) and
dropped afterwards; with ``--url`` the given database is emptied and used.

    python3 bench/bench_sessions_pg.py --sessions 100000
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from bench_sessions import build, timed  # noqa: E402
from support.services import postgres_server  # noqa: E402
from support.stores import pg_empty  # noqa: E402

from clinvk.core.events import TokenUsage  # noqa: E402
from clinvk.core.store.cursor import encode_cursor  # noqa: E402
from clinvk.core.store.postgresql import PostgresStore  # noqa: E402


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-pg-") as scratch, \
            postgres_server(Path(scratch)) as started:
        yield started


def checks(store: PostgresStore, n: int, rng: random.Random
           ) -> list[tuple[str, Callable[[], object]]]:
    ids = [r[0] for r in store.run("sample ids", lambda conn: conn.execute(
        "SELECT id FROM sessions TABLESAMPLE SYSTEM (5) LIMIT 2000").fetchall())]
    deep = store.run("find the middle", lambda conn: conn.execute(
        "SELECT last_used, id FROM sessions ORDER BY last_used DESC, id DESC "
        "OFFSET %s LIMIT 1", (n // 2,)).fetchone())
    middle = encode_cursor((deep[0], deep[1]))

    def pick() -> str:
        return rng.choice(ids)

    return [
        ("list: first page (`limit=100`)", lambda: store.list(limit=100)),
        ("list: page at depth N/2 by cursor", lambda: store.list(limit=100, cursor=middle)),
        # What GET /api/v1/sessions reads: each row's stored record_json, no dict per row.
        ("list_json: first page (`limit=100`)", lambda: store.list_json(limit=100)),
        ("list_json: page at depth N/2 by cursor",
         lambda: store.list_json(limit=100, cursor=middle)),
        ("list: deep page (`offset=N/2`)", lambda: store.list(limit=100, offset=n // 2)),
        ("list: `backend=..., status=...`", lambda: store.list(backend="codex", status="error")),
        ("list: `tag='ci'` (10 % of sessions)", lambda: store.list(tag="ci")),
        ("list: `working_dir=...` (2 % of sessions)",
         lambda: store.list(working_dir="/srv/repos/project-7")),
        ("get: full id", lambda: store.get(pick())),
        ("get: 8-character prefix", lambda: store.get(pick()[:8])),
        ("count() (what /health reads)", store.count),
        ("update: `record_turn`",
         lambda: store.record_turn(pick(), usage=TokenUsage(10, 5), status="completed")),
        ("update: `busy()` lease acquire + release",
         lambda: store.busy(pick()).__enter__().release()),
    ]


def run(url: str, n: int, repeats: int, seed: int) -> None:
    pg_empty(url)
    store = PostgresStore(url)
    started = time.perf_counter()
    build(store, n, random.Random(seed))  # type: ignore[arg-type]  # any store's _insert_many
    built = time.perf_counter() - started
    store.run("analyze", lambda conn: conn.execute("ANALYZE"))
    print(f"\n{n:,} sessions on PostgreSQL (built in {built:.1f} s)\n")
    print("| operation | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, fn in checks(store, n, random.Random(seed + 1)):
        row = timed(fn, max(20, repeats // 10) if "offset" in name else repeats)
        print(f"| {name} | {row['p50']:.3f} | {row['p95']:.3f} | {row['p99']:.3f} |")
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, action="append",
                        help="store size (repeatable; default 100000)")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="an existing database to empty and use")
    args = parser.parse_args(argv)
    with database(args.url) as url:
        for n in args.sessions or [100_000]:
            run(url, n, args.repeats, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
