#!/usr/bin/env python3
"""``POST /api/v1/parallel`` fan-out efficiency: N tasks of 1 s each at max_parallel N.

Each task runs the fake ``claude`` with ``delay`` = 1 s (it sleeps 1 s before answering),
so the ideal wall time is 1 s whatever N. Efficiency = 1 s / measured wall time of the
request. The same N fakes started at once straight from Python (``Popen`` all, wait all)
give the machine's own limit (starting N Python processes costs CPU on 2 cores), so the
gateway's share is the difference between the two. The limits are raised for the bench:
``parallel.max_parallel_limit``, ``server.max_parallel_tasks``, ``max_concurrent_runs``.

    python3 bench/bench_parallel.py [--n 4 --n 16 --n 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FAKE_BIN, Client, Server, bench_env  # noqa: E402

TASK_SECONDS = 1.0


def task_prompt(i: int) -> str:
    return f'task {i} FAKE{{"delay": {TASK_SECONDS}, "reply": "r{i}"}}'


def direct(n: int, env: dict[str, str], workdir: Path) -> float:
    """Wall seconds of N fakes started at once from Python, each with the same argv."""
    argv = [str(FAKE_BIN / "claude"), "-p", "--output-format", "stream-json", "--verbose",
            "--include-partial-messages", "--no-session-persistence"]
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, cwd=str(workdir),
                              start_new_session=True) for _ in range(n)]
    for i, proc in enumerate(procs):  # every prompt first: each fake waits for its stdin
        assert proc.stdin is not None
        proc.stdin.write(task_prompt(i).encode())
        proc.stdin.close()
    for proc in procs:  # small outputs: reading them one after the other cannot block
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read()
        proc.stderr.read()
        assert proc.wait() == 0 and b'"result"' in out
    return time.perf_counter() - started


def run(ns: tuple[int, ...] = (4, 16, 64), repeats: int = 3) -> dict[str, Any]:
    top = max(ns)
    config = {
        "server": {"max_parallel_tasks": top, "max_concurrent_runs": top + 16,
                   "request_timeout_secs": 300},
        "parallel": {"max_parallel_limit": top},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="clinvk-parallel-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        with Server(root, env, config, name="parallel") as server, Client(server) as client:
            warm = {"tasks": [{"backend": "claude", "prompt": "warm up"}], "max_parallel": 1}
            assert client.request("POST", "/api/v1/parallel", warm)[0] == 200
            for n in ns:
                walls, gateway_ms, task_ms, direct_walls = [], [], [], []
                for _ in range(repeats):
                    body = {"tasks": [{"backend": "claude", "prompt": task_prompt(i)}
                                      for i in range(n)], "max_parallel": n}
                    started = time.perf_counter()
                    status, data = client.request("POST", "/api/v1/parallel", body)
                    walls.append(time.perf_counter() - started)
                    assert status == 200, data[:500]
                    report = json.loads(data)["data"]
                    assert report["completed"] == n, report
                    gateway_ms.append(report["total_duration_ms"])
                    task_ms += [r["duration_ms"] for r in report["results"]]
                    direct_walls.append(direct(n, env, root / "work"))
                wall = statistics.median(walls)
                direct_wall = statistics.median(direct_walls)
                rows.append({
                    "n": n, "repeats": repeats, "wall_s": wall, "wall_min_s": min(walls),
                    "wall_max_s": max(walls), "reported_total_ms": statistics.median(gateway_ms),
                    "task_p50_ms": statistics.median(task_ms), "task_max_ms": max(task_ms),
                    "efficiency": TASK_SECONDS / wall, "direct_wall_s": direct_wall,
                    "direct_efficiency": TASK_SECONDS / direct_wall,
                })
                print(f"  parallel N={n}: {wall:.2f} s (direct {direct_wall:.2f} s)",
                      file=sys.stderr)
    return {"task_seconds": TASK_SECONDS, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="task count (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(tuple(args.n or (4, 16, 64)), args.repeats), indent=2))


if __name__ == "__main__":
    main()
