#!/usr/bin/env python3
"""Profile a real ``clinvk serve`` worker under load with py-spy (``pip install py-spy``).

Starts the server on loopback with the fake CLIs, drives one route with a closed loop of
``--concurrency`` clients for ``--seconds``, while ``py-spy record`` samples the gunicorn
worker (``--gil``: only the thread holding the GIL, i.e. where the worker's CPU goes).
Writes the collapsed stacks to ``bench/results/profile-<route>.txt`` and prints the
functions with the most samples, inclusive and self.

    python3 bench/profile_server.py --route native --seconds 20 --concurrency 8
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import NATIVE, OPENAI, ROUTES, gateway_call  # noqa: E402
from common import RESULTS, Client, Server, bench_env  # noqa: E402

CHOICES = {"native": NATIVE, "openai": OPENAI, "anthropic": list(ROUTES)[2], "health": None}


#: Where a sample's time goes: the first category (in this order) one of whose patterns
#: appears in the sample's stack.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("spawn the CLI (Popen, fork/exec, pipes)", ("Popen.", "ProcessRun.start")),
    ("session store (SQLite)", ("SqliteStore.", "Lease.")),
    ("read and parse the CLI's output", ("ProcessRun.lines", "StreamParser", "Parser.feed",
                                         ".finish (clinvk/backends")),
    ("prepare the run (policy, argv, env)", ("Engine.prepare",)),
    ("render the response (schemas, JSON)", ("result_response", "json_response",
                                             "(clinvk/server/schemas.py")),
    ("validate the request (webargs, marshmallow)", ("Parser.parse (webargs",)),
    ("stream frames (NDJSON/SSE)", ("event_frames", "ndjson_frame")),
    ("run bookkeeping (engine events, views)", ("RunHandle.", "run_to_completion",
                                                "Prompt.post", "ChatCompletions.post",
                                                "Messages.post")),
    ("gunicorn access log", ("Logger.access",)),
    ("Flask/werkzeug/extensions (routing, hooks, request/response objects)", (
        "flask/", "werkzeug/", "flask_cors", "flask_smorest", "webargs/")),
    ("gunicorn HTTP (accept, parse, write, keep-alive)", ("gunicorn/",)),
)


def samples(collapsed: Path) -> Iterator[tuple[str, int]]:
    """(stack, sample count) per line of py-spy's collapsed output."""
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack:
            yield stack, int(count_text)


def areas(collapsed: Path) -> list[tuple[str, float]]:
    """Share of samples per area of :data:`AREAS` (plus "other")."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, count in samples(collapsed):
        total += count
        for name, patterns in AREAS:
            if any(p in stack for p in patterns):
                counts[name] += count
                break
        else:
            counts["other (threads, GIL hand-offs, imports)"] += count
    return [(name, 100 * n / max(total, 1)) for name, n in counts.most_common()]


def summarize(collapsed: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, count in samples(collapsed):
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    out = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        out.append(f"\n-- {title} --")
        for frame, count in counter.most_common(top):
            out.append(f"{100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=sorted(CHOICES), default="native")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--idle", action="store_true",
                        help="sample every thread, waiting or not (wall time, not GIL time)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=YAML",
                        help="extra server.* setting, e.g. metrics_enabled=true")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    import yaml

    server_cfg = {"max_concurrent_runs": 128, "threads": 64}
    for item in args.config:
        key, _, value = item.partition("=")
        server_cfg[key] = yaml.safe_load(value)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{args.route}.txt"
    with tempfile.TemporaryDirectory(prefix="clinvk-prof-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        with Server(root, env, {"server": server_cfg}, threads=64) as server:
            if CHOICES[args.route] is None:
                def call(state: dict) -> None:
                    client = state.get("client") or state.setdefault("client", Client(server))
                    assert client.request("GET", "/health")[0] == 200
            else:
                call = gateway_call(server, CHOICES[args.route])
            stop = threading.Event()
            done = [0]

            def loop() -> None:
                state: dict = {}
                while not stop.is_set():
                    call(state)
                    done[0] += 1

            threads = [threading.Thread(target=loop) for _ in range(args.concurrency)]
            for t in threads:
                t.start()
            time.sleep(1)
            worker = server.worker_pids()[0]
            spy = subprocess.run(
                [py_spy, "record", "-p", str(worker), "-d", str(int(args.seconds)), "-r",
                 str(args.rate), "--idle" if args.idle else "--gil", "-f", "raw", "-o", str(out),
                 "--nonblocking"],
                capture_output=True, text=True, check=False)
            stop.set()
            for t in threads:
                t.join()
            if spy.returncode != 0:
                raise SystemExit(spy.stderr)
    print(f"{done[0]} requests; stacks in {out}")
    print("\n-- by area --")
    for name, share in areas(out):
        print(f"{share:5.1f}%  {name}")
    print(summarize(out, args.top))


if __name__ == "__main__":
    main()
