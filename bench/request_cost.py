#!/usr/bin/env python3
"""The gateway's own work per request, in-process: Python calls and thread CPU time.

Runs the Flask app (no gunicorn) with the Flask test client against the fake ``claude``
and reports, per route, the Python function calls one request makes (``sys.setprofile``;
deterministic, so machine load cannot move it) and the request thread's CPU time
(``time.thread_time``: the app's work only, not the CLI's). ``--src DIR`` runs another
source tree, e.g. ``git archive <commit> clinvk | tar -x -C DIR``, for before/after.

    python3 bench/request_cost.py [--src DIR] [--requests 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_env  # noqa: E402

PROMPT = "say hello"
MESSAGES = [{"role": "user", "content": PROMPT}]
REQUESTS = {
    "native": ("/api/v1/prompt", {"backend": "claude", "prompt": PROMPT}, {}),
    "openai": ("/openai/v1/chat/completions", {"model": "claude", "messages": MESSAGES}, {}),
    "anthropic": ("/anthropic/v1/messages",
                  {"model": "claude", "max_tokens": 100, "messages": MESSAGES},
                  {"anthropic-version": "2023-06-01"}),
    "health": ("/health", None, {}),
}


def route_calls(src: str | None) -> dict[str, Callable[[], None]]:
    """One callable per route in :data:`REQUESTS`: a request through the Flask test client
    of an app built from ``src`` (or the installed tree) in a fresh temporary home."""
    if src:
        sys.path.insert(0, src)
    root = Path(tempfile.mkdtemp(prefix="clinvk-cost-"))
    env = bench_env(root)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(root / "work")
    from clinvk.core.config import load_config
    from clinvk.server.app import create_app

    client = create_app(load_config(None, env)).test_client()

    def caller(path: str, body: dict | None, headers: dict[str, str]) -> Callable[[], None]:
        def call() -> None:
            if body is None:
                resp = client.get(path, headers=headers)
            else:
                resp = client.post(path, json=body, headers=headers)
            assert resp.status_code == 200, resp.get_data()[:300]
        return call

    return {name: caller(*request) for name, request in REQUESTS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", help="source tree holding the clinvk package to measure")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    routes = route_calls(args.src)
    import clinvk

    out: dict[str, dict[str, float]] = {}
    for name, call in routes.items():
        for _ in range(3):
            call()
        calls = [0]

        def count(frame, event, arg, calls=calls) -> None:
            if event in ("call", "c_call"):
                calls[0] += 1

        sampled = 20
        sys.setprofile(count)
        for _ in range(sampled):
            call()
        sys.setprofile(None)
        started = time.thread_time()
        for _ in range(args.requests):
            call()
        cpu_ms = (time.thread_time() - started) * 1000 / args.requests
        out[name] = {"calls": calls[0] / sampled, "cpu_ms": cpu_ms}
    print(json.dumps({"src": str(Path(clinvk.__file__).parent.parent), "routes": out}))


if __name__ == "__main__":
    main()
