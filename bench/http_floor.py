#!/usr/bin/env python3
"""The HTTP floor under the gateway: what a request costs before clinvk does anything.

One ``http.client`` keep-alive connection (the client of bench_gateway.py) sends ``GET``
requests to, in turn: a one-thread socket server written here (no HTTP parsing), the same
with one thread hand-off (as gthread's poller thread hands a request to a pool thread),
gunicorn gthread serving a bare WSGI function, gunicorn gthread serving a one-route Flask
app, and ``clinvk serve`` (``/health`` and an unknown path). Each target is measured back
to back and with a 50 ms pause before every request: the pause is what a request at
concurrency 1 sees in bench_gateway.py (a ~50 ms CLI run before it), and on this VM it
lets both vCPUs go idle, so every wake-up and every cache miss costs more.

    python3 bench/http_floor.py [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Server, bench_env, gunicorn  # noqa: E402

BODY = b'{"ok":true}'
RAW_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
APPS = '''
def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", "11")])
    return [b'{"ok":true}']

from flask import Flask
flask_app = Flask("floor")

@flask_app.get("/health")
def health():
    return {"ok": True}
'''


def raw_server(hop: bool) -> int:
    """A keep-alive responder on a thread of this process; returns its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer(conn: socket.socket) -> bool:
        if not conn.recv(65536):
            return False
        conn.sendall(RAW_RESPONSE)
        return True

    jobs: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()

    def pool() -> None:
        while True:
            done.put(answer(jobs.get()))

    def serve() -> None:
        import selectors

        if hop:
            threading.Thread(target=pool, daemon=True).start()
        while True:  # one connection at a time
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not hop:
                while answer(conn):
                    pass
                continue
            sel = selectors.DefaultSelector()
            while True:
                sel.register(conn, selectors.EVENT_READ)
                sel.select()
                sel.unregister(conn)
                jobs.put(conn)
                if not done.get():
                    break
            sel.close()

    threading.Thread(target=serve, daemon=True).start()
    return port


def measure(port: int, path: str, requests: int, pause: float) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    for i in range(requests + 20):
        if pause:
            time.sleep(pause)
        started = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if i >= 20:  # warm-up
            samples.append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []

    def row(label: str, port: int, path: str = "/health") -> None:
        rows.append((label, measure(port, path, args.requests, 0.0),
                     measure(port, path, args.requests, 0.05)))

    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    row("socket server, one thread (no HTTP parsing)", raw_server(hop=False))
    row("socket server, poller thread hands off to a pool thread", raw_server(hop=True))
    with tempfile.TemporaryDirectory(prefix="clinvk-floor-") as tmp:
        root = Path(tmp)
        (root / "floor_apps.py").write_text(APPS)
        for label, target in (("gunicorn gthread, bare WSGI function", "floor_apps:wsgi"),
                              ("gunicorn gthread, one-route Flask app", "floor_apps:flask_app")):
            proc, port = gunicorn(target, root)
            try:
                row(label, port)
            finally:
                proc.terminate()
                proc.wait()
        with Server(root, bench_env(root), {}, name="floor") as server:
            row("`clinvk serve`, `GET /health`", server.port)
            row("`clinvk serve`, `GET /nope` (404)", server.port, "/nope")
    print(f"load average at end: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print("| server | back to back p50 ms | after a 50 ms pause p50 ms |")
    print("|---|---:|---:|")
    for label, busy, paused in rows:
        print(f"| {label} | {busy:.2f} | {paused:.2f} |")


if __name__ == "__main__":
    main()
