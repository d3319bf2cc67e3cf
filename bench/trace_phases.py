#!/usr/bin/env python3
"""Wall time of each phase of a request inside a real ``clinvk serve`` worker.

Starts the server with a ``sitecustomize`` (written to a temporary directory first on the
server's ``PYTHONPATH``; nothing in the product changes) that wraps the interesting
functions and records ``time.perf_counter()`` on entry and exit, per request thread:
Flask's ``wsgi_app``, ``Engine.prepare``, ``SqliteStore.create``/``record_turn``,
``ProcessRun.start``/``_finish``, ``result_response``, gunicorn's response write and the
access log. Drives one route with ``--concurrency`` clients and prints the median and p90
of each step between two consecutive marks.

    python3 bench/trace_phases.py --route native --requests 60 --concurrency 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import ROUTES, gateway_call  # noqa: E402
from common import Server, bench_env  # noqa: E402

SITECUSTOMIZE = '''
import functools, importlib, json, os, threading, time
_local = threading.local()
_out = open(os.environ["BENCH_TRACE_OUT"] + ".%d" % os.getpid(), "a", buffering=1)

def _mark(name):
    marks = getattr(_local, "marks", None)
    if marks is not None:
        marks.append((name, time.perf_counter()))

def _wrap(module, owner, attr, name):
    target = importlib.import_module(module)
    holder = getattr(target, owner) if owner else target
    original = getattr(holder, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        _mark(name + ">")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(name + "<")
    setattr(holder, attr, wrapper)

def _install():
    import gunicorn.workers.gthread as gthread
    handle = gthread.ThreadWorker.handle_request

    def handle_request(self, req, conn):
        _local.marks = [("start", time.perf_counter())]
        try:
            return handle(self, req, conn)
        finally:
            marks, _local.marks = _local.marks, None
            t0 = marks[0][1]
            _out.write(json.dumps([(n, (t - t0) * 1000) for n, t in marks]) + "\\n")
    gthread.ThreadWorker.handle_request = handle_request
    for module, owner, attr, name in (
            ("flask.app", "Flask", "wsgi_app", "wsgi"),
            ("clinvk.core.engine.base", "Engine", "prepare", "prepare"),
            ("clinvk.core.store.sqlite.sessions", "SqliteStore", "create", "session_insert"),
            ("clinvk.core.process.run", "ProcessRun", "start", "spawn"),
            ("clinvk.core.process.run", "ProcessRun", "_finish", "finish"),
            ("clinvk.core.store.sqlite.sessions", "SqliteStore", "record_turn", "record_turn"),
            ("clinvk.server.native.views", None, "result_response", "render"),
            ("gunicorn.http.wsgi", "Response", "write", "write"),
            ("gunicorn.glogging", "Logger", "access", "access_log")):
        _wrap(module, owner, attr, name)

_install()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=("native", "openai", "anthropic"), default="native")
    parser.add_argument("--requests", type=int, default=60, help="per client thread")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    route = list(ROUTES)[("native", "openai", "anthropic").index(args.route)]
    with tempfile.TemporaryDirectory(prefix="clinvk-trace-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        site = root / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env.update(PYTHONPATH=f"{site}:{env['PYTHONPATH']}",
                   BENCH_TRACE_OUT=str(root / "trace"))
        config = {"server": {"max_concurrent_runs": 128}}
        with Server(root, env, config, threads=max(32, args.concurrency + 8)) as server:
            call = gateway_call(server, route)

            def client() -> None:
                state: dict = {}
                for _ in range(args.requests + 1):
                    call(state)
                state["client"].close()

            threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        traces = [json.loads(line) for path in root.glob("trace.*")
                  for line in path.read_text().splitlines()]
    traces = [t for t in traces if any(name == "prepare>" for name, _ in t)][args.concurrency:]
    steps: dict[str, list[float]] = {}
    for marks in traces:
        for (a, ta), (b, tb) in zip(marks, marks[1:], strict=False):
            steps.setdefault(f"{a} -> {b}", []).append(tb - ta)
    print(f"{route}, concurrency {args.concurrency}, {len(traces)} requests traced (ms)\n")
    print("| step | median | p90 |\n|---|---:|---:|")
    for step, values in steps.items():
        if len(values) >= len(traces) // 2:
            ordered = sorted(values)
            print(f"| {step} | {statistics.median(values):.2f} | "
                  f"{ordered[int(0.9 * (len(ordered) - 1))]:.2f} |")


if __name__ == "__main__":
    main()
