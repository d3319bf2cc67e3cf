#!/usr/bin/env python3
"""System calls per request of the floor app and of clinvk, under the same wrk load.

Starts both servers as ``bench/floor.py`` does (one gunicorn gthread worker each, the C
fake CLI), warms a route up, then attaches ``strace -c`` to every thread of each worker
(not to the CLIs they spawn) for one ``wrk -t2 -c16`` run and prints the calls per
request, largest first. strace slows every call, so the load and the lock contention
(``futex``) it shows are larger than without it: read the counts side by side, not as
absolute costs. Needs strace and wrk (``apt-get install -y strace wrk``).

    python3 bench/floor_syscalls.py [--route /api/v1/prompt] [--seconds 4] [--top 14]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor  # noqa: E402
from common import Server, bench_env  # noqa: E402


def traced(port: int, worker: int, path: str, body: dict | None, root: Path,
           seconds: int) -> tuple[int, dict[str, int]]:
    """(requests served, calls per system call name) over one wrk run."""
    out = root / f"strace-{port}.txt"
    tasks = sum((["-p", tid] for tid in os.listdir(f"/proc/{worker}/task")), [])
    tracer = subprocess.Popen(["strace", "-c", "-o", str(out), *tasks],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread before the load starts
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"]
    if body is not None:
        script = root / "post.lua"
        script.write_text(floor.WRK_POST % json.dumps(body))
        args[1:1] = ["-s", str(script)]
    report = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    served = int(re.search(r"(\d+) requests in", report).group(1))
    tracer.send_signal(2)
    tracer.wait()
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    return served, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", default="/api/v1/prompt")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    body = {r[1]: r[2] for r in floor.ROUTES}[args.route]
    with tempfile.TemporaryDirectory(prefix="clinvk-syscalls-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        fake = floor.build_fake(root)
        config = {"backends": {"claude": {"command": str(fake)}},
                  "server": {"max_concurrent_runs": 64}}
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        with Server(root, env, config, name="clinvk") as clinvk, \
                floor.floor_server(root, env, fake) as floor_side:
            sides = {"floor": floor_side, "clinvk": (clinvk.port, clinvk.worker_pids()[0])}
            for name, (port, worker) in sides.items():
                floor.wrk(port, args.route, body, 2, root)  # warm-up
                served, calls = traced(port, worker, args.route, body, root, args.seconds)
                top = sorted(calls.items(), key=lambda kv: -kv[1])[:args.top]
                print(f"{name}: {served} requests, {sum(calls.values()) / served:.1f} "
                      "system calls per request: "
                      + ", ".join(f"{call} {count / served:.1f}" for call, count in top))


if __name__ == "__main__":
    main()
