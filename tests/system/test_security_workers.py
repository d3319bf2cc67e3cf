"""Two gunicorn workers sharing a real redis: limits and metrics hold across workers.

redis comes from the ``redis_url`` fixture (tests/support/services.py: installed with apt
when missing, a private server on a free loopback port).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.http import bound_session
from support.metrics import sample_sum
from support.procs import wait_until

WINDOW_BURST = 20
REQUESTS = 60


@pytest.fixture(scope="module")
def two_workers(server_factory, redis_url, tmp_path_factory):
    metrics_dir = tmp_path_factory.mktemp("multiproc")
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # must be cleared at start
    server = server_factory({"server": {
        "rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": WINDOW_BURST,
        "rate_limit_storage_uri": redis_url, "metrics_enabled": True, "log_format": "json",
        "threads": 4,
    }}, args=("--workers", "2"), extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    server.metrics_dir = metrics_dir
    yield server
    server.stop(timeout=10)


def worker_pids(metrics_dir: Path) -> set[int]:
    """Workers that recorded request metrics (one file set per worker pid)."""
    return {int(m.group(1)) for p in metrics_dir.glob("histogram_*.db")
            if (m := re.fullmatch(r"histogram_(\d+)\.db", p.name))}


def test_limit_and_metrics_hold_across_two_workers(two_workers) -> None:
    server = two_workers
    assert not (server.metrics_dir / "counter_999999.db").exists()
    url = server.url("/api/v1/sessions?limit=1")
    results: Counter[int] = Counter()
    lock = threading.Lock()

    def client(n: int) -> None:
        # a new connection per request, so the kernel spreads them over both workers
        session = bound_session("127.0.0.41")
        for _ in range(n):
            code = session.get(url, timeout=10, headers={"Connection": "close"}).status_code
            with lock:
                results[code] += 1
        session.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(REQUESTS // 6,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert time.monotonic() - started < WINDOW_BURST  # all inside one window
    # one shared window for both workers: exactly the burst got through
    assert results == {200: WINDOW_BURST, 429: REQUESTS - WINDOW_BURST}, results
    pids = worker_pids(server.metrics_dir)
    assert len(pids) == 2, f"one worker served everything: {pids}"

    # /metrics from any worker counts the requests of both (another address: own bucket)
    scraper = bound_session("127.0.0.42")
    for _ in range(2):
        text = scraper.get(server.url("/metrics"), timeout=10).text
        labels = {"path": "/api/v1/sessions"}
        assert sample_sum(text, "clinvk_http_request_duration_seconds_count",
                          status="200", **labels) == WINDOW_BURST
        assert sample_sum(text, "clinvk_http_request_duration_seconds_count",
                          status="429", **labels) == REQUESTS - WINDOW_BURST

    # JSON logs: every line is an object; request lines carry the request id
    rid = "workers-json-rid"
    scraper.get(server.url("/health"), headers={"X-Request-ID": rid}, timeout=10)
    assert wait_until(lambda: rid in server.log(), 5)
    import json

    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    assert any(e["request_id"] == rid and e["path"] == "/health" for e in access)
    assert all(e["request_id"] not in ("", None, "-") for e in access)
    assert len(access) >= REQUESTS
