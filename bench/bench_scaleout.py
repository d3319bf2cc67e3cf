"""Benchmark execution on Celery agent hosts against the embedded path.

* throughput: ``--runs`` prompts from ``--clients`` threads against a slow fake claude
  (``FAKE_CLI_DELAY``, default 1 s per run), with 1 and then 2 ``clinvk worker``
  processes of ``--concurrency`` slots each; runs per second.
* latency at c=1: ``--samples`` fast prompts one after the other, embedded (the CLI is a
  child of this process) and through Celery (the CLI runs under a worker, its lines come
  back over the run's Redis Stream): time to the first event, and to the end.

Everything runs in one engine in this process (no HTTP), so the difference is the
execution path alone. Needs redis-server and the celery extra.

    python3 bench/bench_scaleout.py --runs 16 --clients 8 --concurrency 2 --samples 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env, free_port, pcts  # noqa: E402


def start_redis(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(root)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_worker(root: Path, name: str, url: str, concurrency: int,
                 delay: float) -> subprocess.Popen[bytes]:
    import redis

    env = bench_env(root / name)
    env["FAKE_CLI_DELAY"] = str(delay)
    proc = subprocess.Popen([sys.executable, "-m", "clinvk.cli", "worker", "--broker-url", url,
                             "--name", name, "--concurrency", str(concurrency),
                             "--loglevel", "warning"], env=env, cwd=str(root / name / "work"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    client = redis.Redis.from_url(url)
    while not client.exists(f"clinvk:host:{name}"):
        time.sleep(0.05)
    time.sleep(1.0)  # Celery's consumer starts after the host record
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def engine(root: Path, url: str | None) -> Any:
    from clinvk.core.config import load_config
    from clinvk.core.engine import Engine

    env = dict(os.environ)
    if url:
        env.update(CLINVK_EXECUTION_MODE="celery", CLINVK_EXECUTION_BROKER_URL=url)
    return Engine(load_config(env=env), None, server_mode=True)


def request(root: Path) -> Any:
    from clinvk.core.engine import PromptRequest

    return PromptRequest("hi", backend="claude", ephemeral=True, workdir=str(root / "work"))


def throughput(root: Path, url: str, runs: int, clients: int) -> float:
    eng = engine(root, url)
    todo = list(range(runs))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            assert eng.run(request(root)).ok

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs / (time.perf_counter() - started)


def latency(root: Path, url: str | None, samples: int) -> dict[str, dict[str, float]]:
    eng = engine(root, url)
    first, total = [], []
    for i in range(samples + 2):
        started = time.perf_counter()
        handle = eng.start(eng.prepare(request(root)))
        got_first = None
        for event in handle.events():
            if event is not None and got_first is None:
                got_first = time.perf_counter()
        if i >= 2:  # two warm-up runs
            first.append((got_first - started) * 1000)
            total.append((time.perf_counter() - started) * 1000)
    return {"first_event_ms": pcts(first), "total_ms": pcts(total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("h1", "h2"):
            (root / name).mkdir()
            bench_env(root / name)
        os.environ.update(bench_env(root))
        os.chdir(root / "work")
        redis_proc, url = start_redis(root)
        report: dict[str, Any] = {}
        try:
            one = [start_worker(root, "h1", url, args.concurrency, args.delay)]
            report["runs_per_s_1_worker"] = round(throughput(root, url, args.runs,
                                                             args.clients), 2)
            two = one + [start_worker(root, "h2", url, args.concurrency, args.delay)]
            report["runs_per_s_2_workers"] = round(throughput(root, url, args.runs,
                                                              args.clients), 2)
            stop(two)
            fast = [start_worker(root, "h1", url, 1, 0.0)]
            report["c1_embedded"] = latency(root, None, args.samples)
            report["c1_celery"] = latency(root, url, args.samples)
            stop(fast)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
