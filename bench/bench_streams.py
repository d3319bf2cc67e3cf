#!/usr/bin/env python3
"""Many concurrent streams: 200 streaming requests at once, each lasting about 5 s.

The requests rotate over the three streaming APIs (NDJSON ``/api/v1/prompt``, SSE
``/openai/v1/chat/completions``, SSE ``/anthropic/v1/messages``). Each one runs the fake
``claude`` with ``pause_after_first`` = 5 s: the first text delta arrives at once, the rest
after 5 s, so every stream is open (and its backend alive) at the same time. One gunicorn
worker with enough threads and run slots (``server.threads``/``max_concurrent_runs``
raised for the benchmark). A sampler reads the worker's RSS, threads and backend children
every 0.2 s; memory per in-flight request is (peak RSS - RSS before the burst) / peak
in-flight runs.

A stream succeeds when it answers 200 and ends with its API's normal terminal frame
(``done`` event, ``data: [DONE]`` without an error chunk, ``message_stop``).

    python3 bench/bench_streams.py [--streams 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import STREAM_APIS, stream_bodies  # noqa: E402
from common import Client, Server, bench_env, children, pcts, thread_count  # noqa: E402


def read_stream(client: Client, api: str, path: str, body: dict, headers: dict
                ) -> dict[str, Any]:
    started = time.monotonic()
    first: float | None = None
    resp = client.stream("POST", path, body, headers)
    status = resp.status
    ok = False
    error = False
    tail: list[str] = []
    while True:
        line = resp.readline()
        if not line:
            break
        if line.strip():
            tail = [*tail[-2:], line.decode("utf-8", "replace").strip()[:300]]
        if first is None and line.strip():
            first = time.monotonic()
        text = line.strip()
        if api == STREAM_APIS[0] and text:
            event = json.loads(text)
            ok = ok or event.get("type") == "done"
            error = error or event.get("type") == "error"
        elif api == STREAM_APIS[1]:
            ok = ok or text == b"data: [DONE]"
            error = error or text.startswith(b'data: {"error"')
        elif api == STREAM_APIS[2]:
            ok = ok or text == b"event: message_stop"
            error = error or text == b"event: error"
    ended = time.monotonic()
    good = status == 200 and ok and not error
    return {"api": api, "status": status, "ok": good, "seconds": ended - started,
            "first_byte_ms": (first - started) * 1000 if first else None,
            **({} if good else {"last_lines": tail})}


def run(streams: int = 200, seconds: float = 5.0) -> dict[str, Any]:
    prompt = f'stream FAKE{{"pause_after_first": {seconds}}}'
    bodies = stream_bodies(prompt)
    quick_bodies = stream_bodies("warm up")
    threads = streams + 32
    config = {"server": {"threads": threads, "max_concurrent_runs": streams + 16,
                         "queue_timeout_secs": 120}}
    with tempfile.TemporaryDirectory(prefix="clinvk-streams-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        with Server(root, env, config, threads=threads, name="streams") as server:
            worker = server.worker_pids()[0]
            with Client(server) as client:
                for api, path, body, headers in quick_bodies:  # load every code path once
                    for _ in range(2):
                        assert read_stream(client, api, path, body, headers)["ok"]
            time.sleep(1)
            from common import rss_bytes

            rss_before = rss_bytes(worker)
            threads_before = thread_count(worker)
            samples: list[tuple[float, int, int, int]] = []
            stop = threading.Event()

            def sampler() -> None:
                while not stop.is_set():
                    samples.append((time.monotonic(), rss_bytes(worker), thread_count(worker),
                                    len(children(worker))))
                    time.sleep(0.2)

            results: list[dict[str, Any]] = []
            lock = threading.Lock()
            barrier = threading.Barrier(streams + 1)

            def one(index: int) -> None:
                api, path, body, headers = bodies[index % len(bodies)]
                client = Client(server, timeout=120)
                barrier.wait()
                try:
                    result = read_stream(client, api, path, body, headers)
                except Exception as exc:  # noqa: BLE001 - a failed stream is a result
                    result = {"api": api, "status": None, "ok": False, "seconds": None,
                              "first_byte_ms": None, "error": repr(exc)}
                finally:
                    client.close()
                with lock:
                    results.append(result)

            sampler_thread = threading.Thread(target=sampler, daemon=True)
            sampler_thread.start()
            workers = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
            for t in workers:
                t.start()
            barrier.wait()
            burst_started = time.monotonic()
            for t in workers:
                t.join()
            wall = time.monotonic() - burst_started
            time.sleep(1)
            stop.set()
            sampler_thread.join()
            rss_after = rss_bytes(worker)
    peak = max(samples, key=lambda s: s[1])
    in_flight_peak = max(s[3] for s in samples)
    durations = [r["seconds"] for r in results if r["seconds"] is not None]
    first = [r["first_byte_ms"] for r in results if r["first_byte_ms"] is not None]
    per_api = {api: sum(1 for r in results if r["api"] == api and r["ok"]) for api in STREAM_APIS}
    return {
        "streams": streams, "seconds_each": seconds, "threads": threads,
        "succeeded": sum(1 for r in results if r["ok"]), "failed": [
            r for r in results if not r["ok"]][:5],
        "per_api_ok": per_api, "wall_s": wall,
        "duration": pcts(durations), "first_byte": pcts(first),
        "rss_before_mb": rss_before / 2**20, "rss_peak_mb": peak[1] / 2**20,
        "rss_after_mb": rss_after / 2**20, "threads_before": threads_before,
        "threads_peak": max(s[2] for s in samples), "in_flight_peak": in_flight_peak,
        "kib_per_in_flight": (peak[1] - rss_before) / 1024 / max(in_flight_peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run(args.streams, args.seconds), indent=2))


if __name__ == "__main__":
    main()
