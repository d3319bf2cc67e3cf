"""No test binds a fixed port: the suite runs beside a ``clinvk serve`` on 8080."""

from __future__ import annotations

import contextlib
import socket

import requests
from support.server_process import serve_args


def test_servers_bind_a_free_port_unless_the_test_names_one() -> None:
    assert serve_args(None, ()) == ("--port", "0")
    assert serve_args({"server": {"threads": 2}}, ("--workers", "2")) == (
        "--port", "0", "--workers", "2")
    assert serve_args(None, ("--port", "9")) == ("--port", "9")
    assert serve_args({"server": {"port": 0}}, ()) == ()


def test_a_server_starts_while_8080_is_taken(server_factory) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):  # taken already (a README server?): the same case
        holder.bind(("127.0.0.1", 8080))
        holder.listen()
    try:
        srv = server_factory({"server": {"threads": 2}}, args=("--workers", "2"))
        assert srv.port != 8080
        assert requests.get(srv.url("/health"), timeout=10).status_code == 200
    finally:
        holder.close()
