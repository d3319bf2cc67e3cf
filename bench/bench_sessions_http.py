#!/usr/bin/env python3
"""The session list over HTTP at scale: p50 of ``GET /api/v1/sessions?limit=100`` from a real
``clinvk serve`` (one gunicorn gthread worker) over a store of N sessions.

Per store size it times, interleaved round by round so that machine load hits every route
alike: the first page, the page a client reaches by cursor at depth N/2, and ``/health``
(which reads the session count). One keep-alive connection, one request at a time: the
latency a caller sees, not throughput. It also reports the worker's CPU per request
(utime+stime from /proc, over the measured requests of that route run back to back).

The stores are the ones ``bench_sessions.py`` builds (same sessions), cached outside the
repository in ``--store-dir`` (default ``/tmp/clinvk-bench-sessions``): a million sessions take
~400 s to build once and are reused afterwards. Each size's server runs with
``CLINVK_HOME=<store-dir>/home-<N>`` holding a hard link to the cached file.
``BENCH_CLINVK_SRC=<dir>`` serves another source tree (for before/after).

    python3 bench/bench_sessions_http.py --sessions 1000 --sessions 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sessions  # noqa: E402
from common import Client, Server, bench_env, cpu_seconds, percentile  # noqa: E402

from clinvk.core.store.cursor import encode_cursor  # noqa: E402

DEFAULT_STORE_DIR = Path("/tmp/clinvk-bench-sessions")
LIST = "/api/v1/sessions?limit=100"


def store_home(n: int, store_dir: Path, seed: int) -> Path:
    """A CLINVK_HOME whose sessions.db is the cached store of ``n`` sessions (built once)."""
    store, _facts = bench_sessions.open_store(n, False, seed, store_dir)
    store.close()
    home = store_dir / f"home-{n}"
    home.mkdir(exist_ok=True)
    linked = home / "sessions.db"
    if not linked.exists():
        os.link(store_dir / f"sessions-{n}.db", linked)
    return home


def deep_cursor(home: Path, n: int) -> str:
    """The next_cursor a client holds after paging down to depth N/2 (found once, untimed)."""
    with sqlite3.connect(home / "sessions.db") as conn:
        row = conn.execute("SELECT last_used, id FROM sessions ORDER BY last_used DESC, id DESC "
                           "LIMIT 1 OFFSET ?", (n // 2 - 1,)).fetchone()
    return encode_cursor(tuple(row))


def routes(home: Path, n: int) -> dict[str, str]:
    return {
        "first page (`limit=100`)": LIST,
        "page by cursor at depth N/2 (`limit=100`)": f"{LIST}&cursor={deep_cursor(home, n)}",
        "`/health`": "/health",
    }


def timed_get(client: Client, path: str) -> float:
    start = time.perf_counter()
    status, body = client.request("GET", path)
    elapsed = (time.perf_counter() - start) * 1000
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
    return elapsed


def worker_cpu_us(server: Server, client: Client, path: str, requests: int) -> float:
    """The worker's CPU per request over ``requests`` sequential GETs of ``path``."""
    pids = server.worker_pids()
    before = sum(cpu_seconds(p) for p in pids)
    for _ in range(requests):
        timed_get(client, path)
    return (sum(cpu_seconds(p) for p in pids) - before) / requests * 1e6


def run(n: int, rounds: int, store_dir: Path, seed: int) -> dict[str, Any]:
    home = store_home(n, store_dir, seed)
    paths = routes(home, n)
    root = Path(tempfile.mkdtemp(prefix="clinvk-list-http-"))
    env = {**bench_env(root), "CLINVK_HOME": str(home)}
    with Server(root, env, {}) as server, Client(server) as client:
        first = json.loads(client.request("GET", LIST)[1])["data"]
        if first["total"] != n or len(first["sessions"]) != 100:
            raise SystemExit(f"the server at {home} lists {first['total']} sessions, not {n}")
        for path in paths.values():  # warm-up: page cache, statement cache, first imports
            for _ in range(20):
                timed_get(client, path)
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, path in paths.items():
                samples[name].append(timed_get(client, path))
        cpu = {name: worker_cpu_us(server, client, path, max(50, rounds // 4))
               for name, path in paths.items()}
    rows = [{"route": name, "p50": percentile(values, 50), "p95": percentile(values, 95),
             "cpu_us": cpu[name]} for name, values in samples.items()]
    return {"sessions": n, "rounds": rounds, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, action="append",
                        help="store size (repeatable; default 1000 and 1000000)")
    parser.add_argument("--rounds", type=int, default=300, help="timed requests per route")
    parser.add_argument("--store-dir", type=Path, default=DEFAULT_STORE_DIR)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = [run(n, args.rounds, args.store_dir, args.seed)
               for n in args.sessions or [1000, 1_000_000]]
    if args.json:
        print(json.dumps({"load_at_start": load, "results": results}, indent=2))
        return 0
    print(f"load average at start {load:.2f}, {args.rounds} rounds, "
          f"source {os.environ.get('BENCH_CLINVK_SRC') or 'this tree'}\n")
    print("| route | " + " | ".join(f"{r['sessions']:,}: p50 / p95 ms, worker CPU µs/req"
                                   for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for i, row in enumerate(results[0]["rows"]):
        cells = [f"{r['rows'][i]['p50']:.2f} / {r['rows'][i]['p95']:.2f}, "
                 f"{r['rows'][i]['cpu_us']:,.0f}" for r in results]
        print(f"| {row['route']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
