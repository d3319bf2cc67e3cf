"""Does pinning the query planner (``INDEXED BY``, ``CROSS JOIN``) matter for session pages?

For each listing shape the store pins, times one first page (limit 100) written as the
store writes it and written plainly, and prints SQLite's plan for both. Uses the cached
store of bench/bench_sessions.py (``bench/results/sessions-<N>.db``); every session is given
one of 50 owners first so the owner shapes have something to find.

    python3 bench/bench_store_plans.py --sessions 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sessions  # noqa: E402

from clinvk.core.store.sqlite.rows import SELECTED  # noqa: E402

_PAGE = f"SELECT {SELECTED} FROM {{}} WHERE {{}} ORDER BY {{}} LIMIT 100"
_S_ORDER = "s.last_used DESC, s.id DESC"
_T_ORDER = "t.last_used DESC, t.session_id DESC"
_TAGS = "session_tags AS t {} sessions AS s ON s.id = t.session_id"
WD = "/srv/repos/project-7"

#: (shape, pinned source, plain source, where, order, parameters)
SHAPES = [
    ("working_dir", "sessions AS s INDEXED BY sessions_by_working_dir", "sessions AS s",
     "s.working_dir = ?", _S_ORDER, (WD,)),
    ("working_dir+backend+status", "sessions AS s INDEXED BY sessions_by_working_dir",
     "sessions AS s", "s.working_dir = ? AND s.backend = ? AND s.status = ?", _S_ORDER,
     (WD, "codex", "error")),
    ("owner", "sessions AS s INDEXED BY sessions_by_owner", "sessions AS s", "s.owner = ?",
     _S_ORDER, ("k7",)),
    ("owner+backend+status", "sessions AS s INDEXED BY sessions_by_owner", "sessions AS s",
     "s.owner = ? AND s.backend = ? AND s.status = ?", _S_ORDER, ("k7", "codex", "error")),
    ("tag", _TAGS.format("CROSS JOIN"), _TAGS.format("JOIN"), "t.tag = ?", _T_ORDER, ("ci",)),
    ("tag+backend+status", _TAGS.format("CROSS JOIN"), _TAGS.format("JOIN"),
     "t.tag = ? AND t.backend = ? AND t.status = ?", _T_ORDER, ("api", "codex", "error")),
]


def p50_ms(conn, sql: str, params: tuple, repeats: int) -> float:
    conn.execute(sql, params).fetchall()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        conn.execute(sql, params).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)[len(samples) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    store, _ = bench_sessions.open_store(args.sessions, False, 1)
    conn = store._conn()
    conn.execute("UPDATE sessions SET owner = 'k' || (rowid % 50) WHERE owner IS NULL")
    print(f"| shape ({args.sessions} sessions) | pinned p50 ms | plain p50 ms | plain plan |")
    print("|---|---|---|---|")
    for shape, pinned, plain, where, order, params in SHAPES:
        times = [p50_ms(conn, _PAGE.format(src, where, order), params, args.repeats)
                 for src in (pinned, plain)]
        plan = " / ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN " + _PAGE.format(plain, where, order), params))
        print(f"| {shape} | {times[0]:.2f} | {times[1]:.2f} | {plan} |")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
