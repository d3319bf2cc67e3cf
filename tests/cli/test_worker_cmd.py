"""``clinvk worker``: flags are checked like config keys before anything connects."""

from __future__ import annotations

from support.clirun import Cli


def test_worker_needs_a_broker(cli: Cli) -> None:
    proc = cli("worker")
    assert proc.returncode == 2 and "--broker-url" in proc.stderr, proc.stderr


def test_worker_flags_are_checked_like_config_keys(cli: Cli) -> None:
    proc = cli("worker", "--broker-url", "redis://127.0.0.1:1/0", "--backends", "claude,vim")
    assert proc.returncode == 2 and "execution.backends" in proc.stderr, proc.stderr
    proc = cli("worker", "--broker-url", "http://x")
    assert proc.returncode == 2 and "execution.broker_url" in proc.stderr, proc.stderr
