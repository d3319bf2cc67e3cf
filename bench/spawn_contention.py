#!/usr/bin/env python3
"""Does work done right after spawning a CLI delay the CLI? (It does, on this VM.)

Runs the fake ``claude`` (as the gateway does: own session, prompt on stdin, stream-json)
``--runs`` times in each of three interleaved ways: reading its output at once, doing
``--busy`` ms of CPU work in the parent right after ``Popen`` before reading, and the same
after a ``sched_yield()``. If the new process ran on the other, idle CPU, the busy
parent would cost it nothing; the medians say how much of the parent's work the child
waits for. This is why the gateway writes no session row "while the CLI boots".

    python3 bench/spawn_contention.py [--runs 60] [--busy 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FAKE_BIN  # noqa: E402

ARGV = [sys.executable, "-S", str(FAKE_BIN / "claude"), "-p", "--output-format",
        "stream-json", "--verbose", "--include-partial-messages"]


def one(busy_ms: float, yield_first: bool) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    proc.stdin.write(b"say hello")
    proc.stdin.close()
    if yield_first:
        os.sched_yield()
    until = time.perf_counter() + busy_ms / 1000
    while time.perf_counter() < until:
        pass
    proc.stdout.read()
    proc.stderr.read()
    proc.wait()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--busy", type=float, default=2.0, help="ms of parent work")
    args = parser.parse_args()
    modes = {"read at once": (0.0, False),
             f"{args.busy:g} ms of parent work first": (args.busy, False),
             f"sched_yield, then {args.busy:g} ms of work": (args.busy, True)}
    times: dict[str, list[float]] = {label: [] for label in modes}
    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for _ in range(args.runs):
        for label, (busy, yield_first) in modes.items():
            times[label].append(one(busy, yield_first))
    print("| after the spawn | CLI run p50 ms |\n|---|---:|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
