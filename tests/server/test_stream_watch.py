"""ClientWatch (clinvk/server/streaming.py) on sockets whose descriptor is above 1023.

Found by bench/bench_streams.py: with 200 concurrent streams one gunicorn worker holds
more than 1024 file descriptors, and select.select() refuses those, which was read as
"client gone" and ended streams without their terminal frame."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from clinvk.server.streaming import ClientWatch


@pytest.fixture
def high_fd_pair():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit is too low to open 1100 files")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    server, client = socket.socketpair()
    try:
        assert server.fileno() > 1023
        yield server, client
    finally:
        server.close()
        client.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_connected_client_with_a_high_descriptor_is_not_gone(high_fd_pair) -> None:
    server, client = high_fd_pair
    watch = ClientWatch({"gunicorn.socket": server})
    assert watch.enabled
    assert not watch.gone()
    client.sendall(b"pipelined next request")  # data waiting is not a hang-up
    assert not watch.gone()


def test_a_client_that_closed_is_gone_with_a_high_descriptor(high_fd_pair) -> None:
    server, client = high_fd_pair
    watch = ClientWatch({"gunicorn.socket": server})
    client.close()
    assert watch.gone()
    assert watch.gone()  # stays gone


def test_a_closed_server_socket_counts_as_gone() -> None:
    server, client = socket.socketpair()
    watch = ClientWatch({"gunicorn.socket": server})
    server.close()
    try:
        assert watch.gone()
    finally:
        client.close()
