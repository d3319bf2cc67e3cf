"""Benchmark the session store at scale (docs/performance.md: one page of 100,000 sessions in ms).

Builds a store with N sessions (bulk inserts of 20,000 rows), then times the hot list, get
and update operations (median, p95 and p99 over ``--repeats`` runs after one warm-up
call). The store is built once and cached as ``bench/results/sessions-<N>.db`` (git-ignored;
a million sessions take minutes to build); ``--fresh`` rebuilds it. The timed updates
change the cached store a little (turn counts, last_used), never the number of sessions.

    python3 bench/bench_sessions.py --sessions 10000 --sessions 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, pcts  # noqa: E402

from clinvk.core.errors import AmbiguousPrefix  # noqa: E402
from clinvk.core.events import TokenUsage, utc_timestamp  # noqa: E402
from clinvk.core.store import STATUSES, Session, derive_title
from clinvk.core.store.cursor import encode_cursor
from clinvk.core.store.sqlite import SqliteStore  # noqa: E402

BACKENDS = ("claude", "codex", "gemini")


def build(store: SqliteStore, n: int, rng: random.Random) -> list[str]:
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


def get_prefix(store: SqliteStore, prefix: str) -> object:
    """A prefix lookup; at a million ids an 8-character prefix is sometimes shared, and
    the answer "ambiguous" costs the same lookup."""
    try:
        return store.get(prefix)
    except AmbiguousPrefix:
        return None


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Wall time per call in milliseconds (percentiles), after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return pcts(samples)


def open_store(n: int, fresh: bool, seed: int, directory: Path = RESULTS
               ) -> tuple[SqliteStore, dict[str, float]]:
    """The cached store of ``n`` sessions, built (into a temporary file, then renamed) if
    missing. Returns it with build facts: build seconds (of the run that built it, kept
    next to the store; None if unknown), whether it was cached, size in MB."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sessions-{n}.db"
    facts_path = directory / f"sessions-{n}.json"  # how long the cached store took to build
    if fresh or not path.exists():
        for stale in directory.glob(f"sessions-{n}.db*"):
            stale.unlink()
        partial = directory / f"sessions-{n}.building.db"
        for stale in directory.glob(f"sessions-{n}.building.db*"):
            stale.unlink()
        store = SqliteStore(partial)
        # Build only: a page cache big enough for every index (random ids and last_used
        # make index inserts random), so a million rows take minutes, not an hour.
        store._conn().execute("PRAGMA cache_size = -2000000")
        started = time.perf_counter()
        build(store, n, random.Random(seed))
        seconds: float | None = time.perf_counter() - started
        store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        os.replace(partial, path)
        for leftover in directory.glob(f"sessions-{n}.building.db-*"):
            leftover.unlink()
        facts_path.write_text(json.dumps({"build_seconds": seconds}))
        cached = False
    else:
        cached = True
        try:
            seconds = json.loads(facts_path.read_text())["build_seconds"]
        except (OSError, ValueError, KeyError):
            seconds = None
    store = SqliteStore(path)
    if store.count() != n:
        store.close()
        raise SystemExit(f"{path} does not hold {n} sessions; rerun with --fresh")
    size_mb = sum(os.path.getsize(p) for p in (f"{path}", f"{path}-wal")
                  if os.path.exists(p)) / 1e6
    return store, {"build_seconds": seconds, "cached": cached, "size_mb": size_mb}


def run(n: int, repeats: int = 200, fresh: bool = False, seed: int = 1) -> dict:
    store, facts = open_store(n, fresh, seed)
    rng = random.Random(seed + 1)
    conn = store._conn()
    top = conn.execute("SELECT max(rowid) FROM sessions").fetchone()[0]
    ids = [row[0] for row in conn.execute(
        "SELECT id FROM sessions WHERE rowid IN ({})".format(
            ",".join(str(rng.randint(1, top)) for _ in range(2000))))]

    def pick() -> str:
        return rng.choice(ids)

    # The cursor a client holds after paging down to depth N/2 (found once, untimed).
    middle = conn.execute("SELECT last_used, id FROM sessions ORDER BY last_used DESC, id DESC "
                          "LIMIT 1 OFFSET ?", (n // 2 - 1,)).fetchone()
    deep_cursor = encode_cursor(tuple(middle))

    checks: list[tuple[str, Callable[[], object]]] = [
        ("list: first page (`limit=100`)", lambda: store.list(limit=100)),
        ("list: `backend=...`", lambda: store.list(backend="codex")),
        ("list: `backend=..., status=...`", lambda: store.list(backend="codex", status="error")),
        ("list: `tag='ci'` (10 % of sessions)", lambda: store.list(tag="ci")),
        ("list: `tag='api', backend=...`", lambda: store.list(tag="api", backend="codex")),
        ("list: `working_dir=...` (2 % of sessions)",
         lambda: store.list(working_dir="/srv/repos/project-7")),
        ("list: deep page (`offset=N/2`)", lambda: store.list(offset=n // 2)),
        ("list: deep page by cursor (depth N/2, `limit=100`)",
         lambda: store.list(limit=100, cursor=deep_cursor)),
        # What GET /api/v1/sessions reads: each row's stored record_json, no dict per row.
        ("list_json: first page (`limit=100`)", lambda: store.list_json(limit=100)),
        ("list_json: deep page by cursor (depth N/2, `limit=100`)",
         lambda: store.list_json(limit=100, cursor=deep_cursor)),
        ("get: full id", lambda: store.get(pick())),
        ("get: 8-character prefix", lambda: get_prefix(store, pick()[:8])),
        ("latest(backend, working_dir)",
         lambda: store.latest(backend="gemini", working_dir="/srv/repos/project-7")),
        ("update: `record_turn` (one write transaction)",
         lambda: store.record_turn(pick(), usage=TokenUsage(10, 5), status="completed")),
        ("update: `update(status=..., tags=...)`",
         lambda: store.update(pick(), status="paused", tags=["api", "bench"])),
        ("update: `busy()` lease acquire + release",
         lambda: store.busy(pick()).__enter__().release()),
        ("count() (what /health reads)", store.count),
    ]
    rows = []
    for name, fn in checks:
        rows.append({"operation": name, **timed(fn, max(20, repeats // 10) if "deep" in name
                                                 else repeats)})
    store.close()
    return {"sessions": n, **facts, "repeats": repeats, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, action="append",
                        help="store size (repeatable; default 100000)")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached store")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    results = [run(n, args.repeats, args.fresh, args.seed) for n in args.sessions or [100_000]]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        built = ("cached" if result["cached"] else "built") + (
            f", build took {result['build_seconds']:.1f} s" if result["build_seconds"] else "")
        print(f"\n{result['sessions']:,} sessions ({built}, {result['size_mb']:.0f} MB)\n")
        print("| operation | p50 ms | p95 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for row in result["rows"]:
            print(f"| {row['operation']} | {row['p50']:.3f} | {row['p95']:.3f} | "
                  f"{row['p99']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
