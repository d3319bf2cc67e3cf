#!/usr/bin/env python3
"""clinvk against the framework's floor, in one run on one machine.

A bare Flask app ("the floor") and ``clinvk serve`` run under the same gunicorn settings
(gthread, one worker, 32 threads) and get the same load from ``wrk`` (-t2 -c16) on four
routes:

* ``GET /health`` — the floor answers a constant JSON object;
* ``GET /api/v1/sessions?limit=100`` — the floor selects the newest 100 rows of clinvk's
  own session table with ``sqlite3`` and joins their stored records (``record_json``, the
  listed JSON of each row since migration 009) into one JSON body;
* ``POST /api/v1/prompt`` and ``POST /openai/v1/chat/completions`` — the floor spawns the
  same fake CLI with ``subprocess.run`` (prompt on stdin) and returns its result text.

The fake CLI is a C program built here that prints the recorded ``claude -p --output-format
stream-json --verbose --include-partial-messages`` output (tests/fixtures/real_cli) with a
fresh session id, so the run costs what a process start costs and nothing else.

Both servers run at once and take turns: each route gets ``--rounds`` rounds, and a
round loads the floor, then clinvk, for ``--duration / --rounds`` seconds each, so a
machine whose speed drifts (a shared VM does, by 1.5x within an hour) moves both sides
alike. For each route it prints the medians over the rounds of requests/s and of the
worker's CPU per request (utime+stime from ``/proc/<worker>/stat``, the spawned CLIs
excluded), and the median of the rounds' ratios clinvk / floor. ``--write`` puts the table
into docs/performance.md between the ``floor`` markers.

    python3 bench/floor.py [--duration 10] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Server, bench_env, children, cpu_seconds, gunicorn  # noqa: E402

RECORDING = REPO / "tests/fixtures/real_cli/claude_stream-json_partial.stdout"
DOC = REPO / "docs/performance.md"
MARK_BEGIN, MARK_END = "<!-- floor:begin -->", "<!-- floor:end -->"
PROMPT = {"backend": "claude", "prompt": "say hi"}
CHAT = {"model": "claude", "messages": [{"role": "user", "content": "say hi"}]}

FLOOR_APP = '''
import json, os, sqlite3, subprocess
from flask import Flask, request

app = Flask("floor")
FAKE = os.environ["FLOOR_FAKE"]
DB = os.environ["FLOOR_DB"]
ARGV = [FAKE, "-p", "--output-format", "stream-json", "--verbose",
        "--include-partial-messages"]


def run(prompt):
    proc = subprocess.run(ARGV, input=prompt, capture_output=True, text=True)
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["result"], result["session_id"]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/api/v1/sessions")
def sessions():
    conn = sqlite3.connect(DB)
    try:
        rows = conn.execute(
            "SELECT record_json FROM sessions ORDER BY rowid DESC LIMIT 100").fetchall()
    finally:
        conn.close()
    body = b'{"sessions":[' + b",".join(r[0] for r in rows) + b"]}"
    return app.response_class(body, mimetype="application/json")


@app.post("/api/v1/prompt")
def prompt():
    text, session = run(request.get_json()["prompt"])
    return {"output": text, "session_id": session, "exit_code": 0}


@app.post("/openai/v1/chat/completions")
def chat():
    body = request.get_json()
    text, _ = run(body["messages"][-1]["content"])
    return {"object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}]}
'''

WRK_POST = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
'''


def build_fake(root: Path) -> Path:
    """Compile the C fake ``claude``: the recording with its session id made per run."""
    recording = RECORDING.read_text()
    session = re.search(r'"session_id":"([0-9a-f-]{36})"', recording).group(1)
    parts = recording.split(session)
    literal = ", ".join(json.dumps(p) for p in parts)  # JSON escapes are valid C escapes
    source = root / "fake_claude.c"
    source.write_text(f"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static const char *parts[] = {{{literal}}};
int main(void) {{
    char buf[4096], id[40];
    struct timespec t;
    while (fread(buf, 1, sizeof buf, stdin) > 0) {{}}
    clock_gettime(CLOCK_REALTIME, &t);
    snprintf(id, sizeof id, "%08x-%04x-4%03x-8%03x-%012lx", (unsigned)t.tv_sec,
             (unsigned)getpid() & 0xffff, (unsigned)(t.tv_nsec >> 12) & 0xfff,
             (unsigned)t.tv_nsec & 0xfff, (unsigned long)t.tv_nsec);
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {{
        if (i) fputs(id, stdout);
        fputs(parts[i], stdout);
    }}
    return 0;
}}
""")
    fake_dir = root / "cbin"
    fake_dir.mkdir()
    binary = fake_dir / "claude"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def worker_of(master: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = children(master)
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise SystemExit(f"gunicorn master {master} has no worker")


def wrk(port: int, path: str, body: dict | None, duration: int, root: Path) -> float:
    """Requests/s that ``wrk -t2 -c16`` reached (non-2xx answers count as failure)."""
    args = ["wrk", "-t2", "-c16", f"-d{duration}s", f"http://127.0.0.1:{port}{path}"]
    if body is not None:
        script = root / "post.lua"
        script.write_text(WRK_POST % json.dumps(body))
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{path}: error answers under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def measure(port: int, worker: int, path: str, body: dict | None, duration: int,
            root: Path) -> tuple[float, float]:
    """Requests/s and the worker's CPU µs per request over ``duration`` seconds of load."""
    cpu = cpu_seconds(worker)
    rps = wrk(port, path, body, duration, root)
    per_request = (cpu_seconds(worker) - cpu) / (rps * duration)
    return rps, per_request * 1e6


ROUTES = (("GET /health", "/health", None),
          ("GET /api/v1/sessions?limit=100", "/api/v1/sessions?limit=100", None),
          ("POST /api/v1/prompt", "/api/v1/prompt", PROMPT),
          ("POST /openai/v1/chat/completions", "/openai/v1/chat/completions", CHAT))

SIDES = ("floor", "clinvk")
Sample = tuple[float, float]  # requests/s, CPU µs per request
Row = tuple[str, list[Sample], list[Sample]]  # route, floor rounds, clinvk rounds


@contextlib.contextmanager
def floor_server(root: Path, env: dict[str, str], fake: Path) -> Iterator[tuple[int, int]]:
    """The floor app on gunicorn: (port, worker pid)."""
    (root / "floor_app.py").write_text(FLOOR_APP)
    floor_env = {**env, "FLOOR_FAKE": str(fake),
                 "FLOOR_DB": str(root / "clinvk-home/sessions.db")}
    proc, port = gunicorn("floor_app:app", root, floor_env)
    try:
        yield port, worker_of(proc.pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


def run(duration: int, rounds: int, only: str | None = None,
        server: dict[str, object] | None = None) -> list[Row]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    slice_secs = max(1, duration // rounds)
    with tempfile.TemporaryDirectory(prefix="clinvk-floor-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        fake = build_fake(root)
        config = {"backends": {"claude": {"command": str(fake)}},
                  "server": {"max_concurrent_runs": 64, **(server or {})}}
        rows: list[Row] = []
        routes = [r for r in ROUTES if only is None or only in r[0]]
        with Server(root, env, config, name="clinvk") as clinvk:
            # clinvk's store exists now; the floor's session list reads it
            with floor_server(root, env, fake) as floor:
                targets = {"floor": floor, "clinvk": (clinvk.port, clinvk.worker_pids()[0])}
                # prompts first: the sessions they leave are what both lists return
                for label, path, body in sorted(routes, key=lambda r: r[2] is None):
                    samples: dict[str, list[Sample]] = {side: [] for side in SIDES}
                    for port, _ in targets.values():  # warm-up: imports, caches, spawns
                        wrk(port, path, body, 2, root)
                    for _ in range(rounds):
                        for side in SIDES:
                            port, worker = targets[side]
                            samples[side].append(
                                measure(port, worker, path, body, slice_secs, root))
                    rows.append((label, samples["floor"], samples["clinvk"]))
    order = [label for label, *_ in routes]
    return sorted(rows, key=lambda row: order.index(row[0]))


def table(rows: list[Row]) -> str:
    lines = ["| route | floor req/s | clinvk req/s | rps ratio | floor CPU µs/req | "
             "clinvk CPU µs/req | CPU ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    median = statistics.median
    for label, floor, clinvk in rows:
        rps_ratio = median(c[0] / f[0] for f, c in zip(floor, clinvk, strict=True))
        cpu_ratio = median(c[1] / f[1] for f, c in zip(floor, clinvk, strict=True))
        lines.append(f"| `{label}` | {median(f[0] for f in floor):,.0f} | "
                     f"{median(c[0] for c in clinvk):,.0f} | {rps_ratio:.2f} | "
                     f"{median(f[1] for f in floor):,.0f} | "
                     f"{median(c[1] for c in clinvk):,.0f} | {cpu_ratio:.2f} |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(MARK_BEGIN) + len(MARK_BEGIN), doc.index(MARK_END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds of load per route and server")
    parser.add_argument("--rounds", type=int, default=5,
                        help="turns the servers take within each route's duration")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--only", help="only the routes whose label contains this text")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                        help="a server.* config key for clinvk, e.g. access_log=false")
    args = parser.parse_args()
    server = {key: yaml.safe_load(value)
              for key, _, value in (item.partition("=") for item in args.set)}
    if args.write and (args.only or args.set):
        parser.error("--write needs every route on the defaults")
    load = os.getloadavg()[0]
    rows = run(args.duration, args.rounds, args.only, server)
    text = (f"wrk -t2 -c16, {args.duration} s per route and server in {args.rounds} "
            f"alternating rounds (medians), load average at start {load:.2f}, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + table(rows))
    print(text)
    if args.write:
        write_doc(text)


if __name__ == "__main__":
    main()
