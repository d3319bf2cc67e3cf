#!/usr/bin/env python3
"""Concurrency-1 overhead of two source trees, measured side by side.

Starts one ``clinvk serve`` from ``--before`` (a commit, exported with ``git archive``)
and one from the working tree, then, for ``--pairs`` iterations, runs the fake CLI
directly and sends the same request to each server, in rotating order, so that all three
see the same machine state. Reports per route the median of (server - direct) over the
iterations for each tree: differences of 0.3 ms show up that a run-to-run comparison of
``bench_gateway.py --c1`` (about +/-1 ms apart on this machine) would hide.

    python3 bench/ab_overhead.py --before HEAD~1 --pairs 150 [--routes native,openai]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import ROUTES, capture_invocations, direct_call, gateway_call  # noqa: E402
from common import REPO, Server, bench_env  # noqa: E402
from compare_cpu import export  # noqa: E402

NAMES = dict(zip(("native", "openai", "anthropic"), ROUTES, strict=True))


def serve(src: str, root: Path, env: dict[str, str], name: str) -> Server:
    os.environ["BENCH_CLINVK_SRC"] = src
    root.mkdir()
    return Server(root, bench_env(root) | {k: v for k, v in env.items() if k.startswith("FAKE")},
                  {}, name=name).__enter__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD")
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--routes", default="native,openai,anthropic")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinvk-ab-") as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        export(args.before, before)
        root = Path(tmp) / "run"
        root.mkdir()
        env = bench_env(root)
        log = root / "fake-runs.jsonl"
        os.environ["BENCH_CLINVK_SRC"] = str(REPO)
        with Server(root, {**env, "FAKE_CLI_LOG": str(log)}, {}, name="capture") as server:
            invocations = capture_invocations(server, log)
        servers = {"before": serve(str(before), Path(tmp) / "a", env, "before"),
                   "after": serve(str(REPO), Path(tmp) / "b", env, "after")}
        print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        try:
            for route in args.routes.split(","):
                name = NAMES[route]
                calls = {"direct": direct_call(invocations[name], env),
                         **{label: gateway_call(srv, name) for label, srv in servers.items()}}
                states: dict[str, dict] = {label: {} for label in calls}
                for label, call in calls.items():
                    call(states[label])  # warm-up
                times: dict[str, list[float]] = {label: [] for label in calls}
                order = list(calls)
                for i in range(args.pairs):
                    for label in order[i % 3:] + order[:i % 3]:
                        started = time.perf_counter()
                        calls[label](states[label])
                        times[label].append((time.perf_counter() - started) * 1000)
                for state in states.values():
                    if state.get("client"):
                        state["client"].close()
                cells = []
                for label in servers:
                    diffs = [g - d for g, d in zip(times[label], times["direct"], strict=True)]
                    cells.append(f"{label} {statistics.median(diffs):+.2f} ms "
                                 f"(p50 {statistics.median(times[label]):.1f})")
                print(f"{name}: direct p50 {statistics.median(times['direct']):.1f} ms; "
                      + "; ".join(cells))
        finally:
            for srv in servers.values():
                srv.__exit__(None, None, None)
        print(f"load average at end: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
