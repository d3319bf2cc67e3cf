#!/usr/bin/env python3
"""Before/after: the gateway's own CPU per request and latency, for two source trees.

Exports ``--before`` (a commit, default ``HEAD``) into a temporary directory and runs the
same closed loop against a ``clinvk serve`` from that tree and from the working tree,
alternating A/B ``--rounds`` times so that both see the same machine load. Per route it
reports the server workers' CPU time per request (utime + stime of the gunicorn worker,
not of the CLIs; the number machine load moves least) and the client's p50 latency.

    python3 bench/compare_cpu.py --before HEAD~1 [--after COMMIT] --rounds 3 --requests 150
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import ROUTES, gateway_call  # noqa: E402
from common import REPO, Client, Server, bench_env, percentile  # noqa: E402


def export(commit: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "clinvk"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def measure(src: str, route: str, concurrency: int, requests: int, root: Path
            ) -> tuple[float, float]:
    """(CPU ms per request, p50 latency ms) of one closed loop on a fresh server."""
    os.environ["BENCH_CLINVK_SRC"] = src
    env = bench_env(root)
    config = {"server": {"max_concurrent_runs": 128}}
    with Server(root, env, config, name="cmp") as server:
        if route == "health":
            def call(state: dict) -> None:
                client = state.get("client") or state.setdefault("client", Client(server))
                assert client.request("GET", "/health")[0] == 200
        else:
            call = gateway_call(server, route)
        import threading

        latencies: list[float] = []
        lock = threading.Lock()
        left = [requests]

        def worker() -> None:
            state: dict = {}
            call(state)
            while True:
                with lock:
                    if left[0] <= 0:
                        break
                    left[0] -= 1
                started = time.perf_counter()
                call(state)
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
            state["client"].close()

        for _ in range(3):  # warm the worker up (imports, caches)
            call({})
        cpu0 = server.workers_cpu()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = server.workers_cpu() - cpu0
    return cpu * 1000 / (requests + concurrency), percentile(latencies, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD", help="commit to compare with")
    parser.add_argument("--after", help="commit to compare (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--routes", default="native,openai,anthropic,health")
    args = parser.parse_args()
    names = {"native": list(ROUTES)[0], "openai": list(ROUTES)[1],
             "anthropic": list(ROUTES)[2], "health": "health"}
    routes = [names[r] for r in args.routes.split(",")]
    with tempfile.TemporaryDirectory(prefix="clinvk-cmp-") as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        export(args.before, before)
        trees = {"before": str(before), "after": str(REPO)}
        if args.after:
            after = Path(tmp) / "after"
            after.mkdir()
            export(args.after, after)
            trees["after"] = str(after)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        for rnd in range(args.rounds):
            for route in routes:
                for label in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
                    root = Path(tempfile.mkdtemp(dir=tmp))
                    requests = args.requests * (10 if route == "health" else 1)
                    results.setdefault((route, label), []).append(
                        measure(trees[label], route, args.concurrency, requests, root))
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"\nbefore = {args.before}, after = {args.after or 'working tree'}; "
          f"concurrency {args.concurrency}, {args.rounds} rounds (median, [min-max])\n")
    print("| route | CPU ms/request before | after | p50 ms before | after |")
    print("|---|---:|---:|---:|---:|")
    for route in routes:
        cells = []
        for index in (0, 1):
            for label in ("before", "after"):
                values = [r[index] for r in results[(route, label)]]
                cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}-"
                             f"{max(values):.2f}]")
        print(f"| {route} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")


if __name__ == "__main__":
    main()
