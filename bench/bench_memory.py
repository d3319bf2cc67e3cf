#!/usr/bin/env python3
"""Idle server memory of ``clinvk serve`` with 1 and 4 gunicorn workers.

For each worker count: start the server (default config, 32 threads per worker), wait
until it answers, let it settle 2 s and read RSS and PSS (``/proc/<pid>/smaps_rollup``:
shared pages counted once across the processes that share them) of the master and of
every worker. Then 20 ``POST /api/v1/prompt`` requests (fake ``claude``) and 20
``GET /health`` per worker, 2 s of rest, and the same readings again: the idle footprint
of a server that has served requests.

    python3 bench/bench_memory.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Client, Server, bench_env, pss_bytes, rss_bytes  # noqa: E402

MIB = 2**20


def reading(server: Server) -> dict[str, Any]:
    workers = server.worker_pids()
    return {
        "master_rss_mb": rss_bytes(server.pid) / MIB,
        "master_pss_mb": pss_bytes(server.pid) / MIB,
        "worker_rss_mb": [rss_bytes(p) / MIB for p in workers],
        "worker_pss_mb": [pss_bytes(p) / MIB for p in workers],
        "total_rss_mb": (rss_bytes(server.pid) + sum(rss_bytes(p) for p in workers)) / MIB,
        "total_pss_mb": (pss_bytes(server.pid) + sum(pss_bytes(p) for p in workers)) / MIB,
    }


def run(worker_counts: tuple[int, ...] = (1, 4)) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="clinvk-memory-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        for workers in worker_counts:
            with Server(root, env, {}, workers=workers, name=f"memory-{workers}") as server:
                time.sleep(2)
                started = reading(server)
                with Client(server) as client:
                    for _ in range(20 * workers):
                        status, _ = client.request("POST", "/api/v1/prompt",
                                                   {"backend": "claude", "prompt": "hi"})
                        assert status == 200
                        assert client.request("GET", "/health")[0] == 200
                        client.close()  # new connection: spread over the workers
                        client.conn.connect()
                time.sleep(2)
                served = reading(server)
            rows.append({"workers": workers, "after_start": started, "after_requests": served})
            print(f"  memory {workers} worker(s): {started['total_rss_mb']:.1f} MB RSS, "
                  f"{served['total_rss_mb']:.1f} MB after requests", file=sys.stderr)
    return {"rows": rows}


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
