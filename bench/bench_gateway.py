#!/usr/bin/env python3
"""Gateway overhead, throughput and streaming delay of ``clinvk serve`` over the fake CLI.

1. **Overhead**: for each of ``POST /api/v1/prompt``, ``/openai/v1/chat/completions`` and
   ``/anthropic/v1/messages``, the fake ``claude`` is also run *directly* with exactly the
   argv, stdin and working directory the gateway used for that route (recorded by the
   fake's ``FAKE_CLI_LOG`` during a warm-up request). Each client thread alternates the
   direct run and the HTTP request, so both paths see the same background load; the
   overhead is the difference of their percentiles. Concurrency 1, 16 and 64.
2. **Throughput**: requests/s of each route (gateway only) and of the direct CLI at
   concurrency 16, plus ``GET /health`` (no backend run: the HTTP stack alone). The
   server workers' own CPU time (``/proc/<pid>/stat`` utime + stime, not the CLIs')
   divided by the requests gives the gateway's CPU cost per request, a number that
   machine load hardly moves.
3. **Streaming delay**: the backend is the fake behind a tiny relay that stamps
   (``time.monotonic``, system-wide) each text-delta line right before writing it to the
   gateway; the client stamps when the matching NDJSON event / SSE frame arrives.
4. ``run_nice``: the overhead at concurrency 16 and 64 again with ``server.backend_nice``
   set, the direct runs at the same niceness.

Usage (from the repository root)::

    python3 bench/bench_gateway.py [--quick]      # prints JSON; bench/run_all.py renders it
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FAKE_BIN, Client, Server, ThinGateway, bench_env, pcts  # noqa: E402

PROMPT = "say hello"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
NATIVE, OPENAI, ANTHROPIC = ("POST /api/v1/prompt", "POST /openai/v1/chat/completions",
                             "POST /anthropic/v1/messages")
ROUTES: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    NATIVE: ("/api/v1/prompt", {"backend": "claude", "prompt": PROMPT}, {}),
    OPENAI: ("/openai/v1/chat/completions",
             {"model": "claude", "messages": [{"role": "user", "content": PROMPT}]}, {}),
    ANTHROPIC: ("/anthropic/v1/messages",
                {"model": "claude", "max_tokens": 1024,
                 "messages": [{"role": "user", "content": PROMPT}]}, ANTHROPIC_HEADERS),
}
STREAM_APIS = ("NDJSON (/api/v1/prompt)", "SSE (/openai/v1/chat/completions)",
               "SSE (/anthropic/v1/messages)")

STAMP_RELAY = """#!{python} -S
import os, subprocess, sys, time
proc = subprocess.Popen([{fake!r}, *sys.argv[1:]], stdout=subprocess.PIPE)
with open(os.environ["BENCH_STAMP_LOG"], "a") as log:
    for line in iter(proc.stdout.readline, b""):
        if b'"text_delta"' in line:  # stamped just before the gateway can see it
            log.write(repr(time.monotonic()) + "\\n")
            log.flush()
        os.write(1, line)
sys.exit(proc.wait())
"""


# --------------------------------------------------------------------------- overhead


def capture_invocations(server: Server, log_path: Path) -> dict[str, dict[str, Any]]:
    """The argv/stdin/cwd the gateway gives the fake for each route (one request each)."""
    out = {}
    with Client(server) as client:
        for name, (path, body, headers) in ROUTES.items():
            log_path.write_text("")
            status, data = client.request("POST", path, body, headers)
            assert status == 200, (name, status, data[:500])
            runs = [json.loads(line) for line in log_path.read_text().splitlines()]
            assert len(runs) == 1, runs
            out[name] = {"argv": [str(FAKE_BIN / "claude"), *runs[0]["argv"]],
                         "stdin": runs[0]["stdin"] or "", "cwd": runs[0]["cwd"]}
    return out


def direct_call(invocation: dict[str, Any], env: dict[str, str], nice: int = 0
                ) -> Callable[[dict], None]:
    """Run the fake as the gateway does: own session, prompt on stdin; with ``nice``, at
    the priority ``server.backend_nice`` gives the gateway's backends (same function)."""
    import subprocess

    from clinvk.core.process import lower_priority

    stdin = invocation["stdin"].encode()

    def call(state: dict) -> None:
        proc = subprocess.Popen(invocation["argv"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=invocation["cwd"], start_new_session=True)
        if nice:
            lower_priority(proc.pid, nice)
        out, err = proc.communicate(stdin)
        assert proc.returncode == 0 and b'"result"' in out, err[-500:]

    return call


def gateway_call(server: Server, name: str) -> Callable[[dict], None]:
    path, body, headers = ROUTES[name]

    def call(state: dict) -> None:
        client = state.get("client")
        if client is None:
            client = state["client"] = Client(server)
        status, data = client.request("POST", path, body, headers)
        assert status == 200, (name, status, data[:500])

    return call


def run_interleaved(calls: dict[str, Callable[[dict], None]], concurrency: int,
                    per_worker: int) -> dict[str, list[float]]:
    """``concurrency`` threads each make every call ``per_worker`` times (after one
    unmeasured warm-up of each), the order rotated every iteration so that no call always
    follows the same one; returns milliseconds per call name."""
    names = list(calls)
    barrier = threading.Barrier(concurrency)

    def worker(index: int) -> dict[str, list[float]]:
        state: dict = {}
        try:
            for name in names:
                calls[name](state)
            barrier.wait()
            out: dict[str, list[float]] = {name: [] for name in names}
            for iteration in range(per_worker):
                shift = (index + iteration) % len(names)
                for name in names[shift:] + names[:shift]:
                    started = time.perf_counter()
                    calls[name](state)
                    out[name].append((time.perf_counter() - started) * 1000)
            return out
        finally:
            for client in ("client", "thin_client"):
                if state.get(client):
                    state[client].close()

    merged: dict[str, list[float]] = {name: [] for name in names}
    with ThreadPoolExecutor(concurrency) as pool:
        for result in pool.map(worker, range(concurrency)):
            for name in names:
                merged[name] += result[name]
    return merged


def bench_overhead(server: Server, env: dict[str, str], invocations: dict[str, dict],
                   plan: dict[int, int], nice: int = 0, thin: ThinGateway | None = None
                   ) -> list[dict[str, Any]]:
    """With ``thin``, the concurrency-1 rounds also run the route's CLI invocation through
    the thin gateway (common.ThinGateway), interleaved with the other two paths."""
    rows = []
    for concurrency, per_worker in plan.items():
        for name in ROUTES:
            calls = {"direct": direct_call(invocations[name], env, nice),
                     "gateway": gateway_call(server, name)}
            if thin is not None and concurrency == 1:
                calls["thin"] = thin.call(invocations[name])
            cpu0 = server.workers_cpu()
            samples = run_interleaved(calls, concurrency, per_worker)
            cpu = server.workers_cpu() - cpu0
            gateway_requests = concurrency * (per_worker + 1)  # warm-ups hit the server too
            # same thread, same iteration: the two calls of a pair ran back to back
            paired = [g - d for g, d in zip(samples["gateway"], samples["direct"], strict=True)]
            rows.append({"route": name, "concurrency": concurrency,
                         "direct": pcts(samples["direct"]), "gateway": pcts(samples["gateway"]),
                         "paired_diff": pcts(paired),
                         "gateway_cpu_ms": cpu * 1000 / gateway_requests})
            if "thin" in samples:
                rows[-1]["thin"] = pcts(samples["thin"])
                rows[-1]["thin_paired_diff"] = pcts(
                    [t - d for t, d in zip(samples["thin"], samples["direct"], strict=True)])
            print(f"  overhead {name} c={concurrency}: direct p50 "
                  f"{rows[-1]['direct']['p50']:.1f} ms, gateway p50 "
                  f"{rows[-1]['gateway']['p50']:.1f} ms", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- throughput


def closed_loop(call: Callable[[dict], None], concurrency: int, total: int) -> float:
    """Run ``total`` calls on ``concurrency`` threads as fast as they complete; wall s."""
    counter = iter(range(total))
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        state: dict = {}
        try:
            call(state)  # warm-up
            barrier.wait()
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                call(state)
        finally:
            if state.get("client"):
                state["client"].close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def bench_throughput(server: Server, env: dict[str, str], invocations: dict[str, dict],
                     concurrency: int, total: int, cheap_total: int) -> list[dict[str, Any]]:
    rows = []

    def measure(label: str, call: Callable[[dict], None], count: int, on_server: bool) -> None:
        cpu0 = server.workers_cpu()
        wall = closed_loop(call, concurrency, count)
        cpu = server.workers_cpu() - cpu0
        rows.append({"what": label, "concurrency": concurrency, "requests": count,
                     "seconds": wall, "rps": count / wall,
                     "gateway_cpu_ms": cpu * 1000 / (count + concurrency) if on_server
                     else None})
        print(f"  throughput {label}: {count / wall:.1f}/s", file=sys.stderr)

    measure("direct CLI (native argv)", direct_call(invocations[NATIVE], env), total, False)
    for name in ROUTES:
        measure(name, gateway_call(server, name), total, True)

    def health(state: dict) -> None:
        client = state.get("client") or state.setdefault("client", Client(server))
        status, _ = client.request("GET", "/health")
        assert status == 200

    measure("GET /health (no backend run)", health, cheap_total, True)
    return rows


# --------------------------------------------------------------------------- streaming


def stream_bodies(prompt: str) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    messages = [{"role": "user", "content": prompt}]
    return [
        (STREAM_APIS[0], "/api/v1/prompt", {"backend": "claude", "prompt": prompt,
                                            "output_format": "stream-json",
                                            "ephemeral": True}, {}),
        (STREAM_APIS[1], "/openai/v1/chat/completions",
         {"model": "claude", "messages": messages, "stream": True}, {}),
        (STREAM_APIS[2], "/anthropic/v1/messages",
         {"model": "claude", "max_tokens": 1024, "messages": messages, "stream": True},
         ANTHROPIC_HEADERS),
    ]


def is_delta(api: str, line: bytes) -> bool:
    """Whether a received line carries one text delta of the reply."""
    if api == STREAM_APIS[0]:
        if not line.strip():
            return False
        event = json.loads(line)
        return event["type"] == "message" and bool(event["content"].get("is_partial"))
    if not line.startswith(b"data: {"):
        return False
    frame = json.loads(line[6:])
    if api == STREAM_APIS[1]:
        choices = frame.get("choices") or []
        return bool(choices and choices[0]["delta"].get("content"))
    return frame.get("type") == "content_block_delta"


def bench_stream(server: Server, stamp_log: Path, streams: int) -> dict[str, dict[str, Any]]:
    reply = " ".join(f"w{i:02d}" for i in range(24))
    prompt = f'{PROMPT} FAKE{{"reply": "{reply}", "chunk_delay": 0.03}}'
    out: dict[str, dict[str, Any]] = {}
    with Client(server) as client:
        for api, path, body, headers in stream_bodies(prompt):
            all_delays: list[float] = []
            first: list[float] = []
            mismatches = 0
            for i in range(streams + 1):  # the first stream is a warm-up
                stamp_log.write_text("")
                received: list[float] = []
                resp = client.stream("POST", path, body, headers)
                assert resp.status == 200, resp.read()[:500]
                while True:
                    line = resp.readline()
                    now = time.monotonic()
                    if not line:
                        break
                    if is_delta(api, line.rstrip(b"\n")):
                        received.append(now)
                written = [float(x) for x in stamp_log.read_text().split()]
                if len(written) != len(received):
                    mismatches += 1
                if i == 0:
                    continue
                pairs = list(zip(written, received, strict=False))
                delays = [(r - w) * 1000 for w, r in pairs]
                all_delays += delays
                if delays:
                    first.append(delays[0])
            out[api] = {"all": pcts(all_delays), "first": pcts(first), "streams": streams,
                        "mismatched_streams": mismatches, "samples": all_delays}
            print(f"  stream {api}: p50 {out[api]['all']['p50']:.2f} ms", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- entry


def run(quick: bool = False) -> dict[str, Any]:
    plan = {1: 12, 16: 2, 64: 1} if quick else {1: 100, 16: 4, 64: 2}
    total, cheap, streams = (48, 500, 6) if quick else (160, 3000, 25)
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        run_log = root / "fake-runs.jsonl"
        config = {"server": {"max_concurrent_runs": 128, "threads": 96}}
        with Server(root, {**env, "FAKE_CLI_LOG": str(run_log)}, config, threads=96,
                    name="capture") as server:
            invocations = capture_invocations(server, run_log)
        with Server(root, env, config, threads=96, name="overhead") as server, \
                ThinGateway(root, env) as thin:
            overhead = bench_overhead(server, env, invocations, plan, thin=thin)
            throughput = bench_throughput(server, env, invocations, 16, total, cheap)
        relay = root / "stamp-claude"
        relay.write_text(STAMP_RELAY.format(python=sys.executable, fake=str(FAKE_BIN / "claude")))
        relay.chmod(0o755)
        stamp_log = root / "stamps.log"
        stream_env = {**env, "BENCH_STAMP_LOG": str(stamp_log)}
        with Server(root, stream_env, {"backends": {"claude": {"command": str(relay)}}},
                    name="stream") as server:
            stream = bench_stream(server, stamp_log, streams)
    return {"plan": plan, "overhead": overhead, "throughput": throughput, "stream": stream,
            "invocations": {k: v["argv"][1:] for k, v in invocations.items()}}


def run_c1(pairs: int) -> dict[str, Any]:
    """Only the concurrency-1 overhead (``--c1 PAIRS``): a quick check of one change."""
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-c1-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        run_log = root / "fake-runs.jsonl"
        with Server(root, {**env, "FAKE_CLI_LOG": str(run_log)}, {}, name="capture") as server:
            invocations = capture_invocations(server, run_log)
        with Server(root, env, {}, name="overhead") as server, ThinGateway(root, env) as thin:
            rows = bench_overhead(server, env, invocations, {1: pairs}, thin=thin)
    for row in rows:
        direct = row["direct"]["p50"]
        print(f"  {row['route']}: overhead p50 {row['gateway']['p50'] - direct:+.2f} ms, "
              f"paired p50 {row['paired_diff']['p50']:+.2f} ms, worker CPU "
              f"{row['gateway_cpu_ms']:.2f} ms/request; thin gateway overhead p50 "
              f"{row['thin']['p50'] - direct:+.2f} ms, paired p50 "
              f"{row['thin_paired_diff']['p50']:+.2f} ms", file=sys.stderr)
    return {"pairs": pairs, "overhead": rows}


def run_nice(quick: bool = False, nice: int = 10) -> dict[str, Any]:
    """Overhead at concurrency 16 and 64 with ``server.backend_nice`` = ``nice``; the
    direct runs get the same niceness, so both paths run the CLI at the same priority."""
    plan = {16: 2, 64: 1} if quick else {16: 4, 64: 2}
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-nice-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        run_log = root / "fake-runs.jsonl"
        config = {"server": {"max_concurrent_runs": 128, "threads": 96, "backend_nice": nice}}
        with Server(root, {**env, "FAKE_CLI_LOG": str(run_log)}, config, threads=96,
                    name="capture") as server:
            invocations = capture_invocations(server, run_log)
        with Server(root, env, config, threads=96, name="overhead-nice") as server:
            overhead = bench_overhead(server, env, invocations, plan, nice)
    return {"nice": nice, "plan": plan, "overhead": overhead}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--c1", type=int, metavar="PAIRS",
                        help="only the concurrency-1 overhead, PAIRS pairs per route")
    args = parser.parse_args()
    result = run_c1(args.c1) if args.c1 else run(args.quick)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
