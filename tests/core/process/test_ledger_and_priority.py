"""The crash ledger and backend priority, against real processes."""

from __future__ import annotations

import os
import sys
import threading

import pytest

# --------------------------------------------------------------------------- run ledger


def _ledger_lines(path) -> set[str]:
    return set(path.read_text().splitlines()) if path.exists() else set()


def test_run_ledger_mirrors_concurrent_starts_and_ends(tmp_path) -> None:
    """Written by a background thread now: many runs starting and ending at once all end
    up in the file, and flush() waits for it."""
    import subprocess

    from clinvk.core.process import RunLedger
    from clinvk.core.process.procfs import start_time as _start_time

    ledger = RunLedger(tmp_path / "run" / "worker.runs")
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(24)]
    try:
        threads = [threading.Thread(target=ledger.add, args=(p.pid,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        assert _ledger_lines(ledger.path) == {f"{p.pid} {_start_time(p.pid)} -" for p in procs}
        threads = [threading.Thread(target=ledger.remove, args=(p.pid,)) for p in procs[:20]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        assert _ledger_lines(ledger.path) == {f"{p.pid} {_start_time(p.pid)} -"
                                              for p in procs[20:]}
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for p in procs[20:]:
        ledger.remove(p.pid)
    assert ledger.flush()
    assert ledger.path.read_text() == ""


def test_run_ledger_kill_orphaned_groups_reads_what_was_flushed(tmp_path) -> None:
    import subprocess

    from clinvk.core.process import RunLedger, kill_orphaned_groups

    ledger = RunLedger(tmp_path / "worker.runs")
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ledger.add(proc.pid)
        assert ledger.flush()
        assert kill_orphaned_groups(ledger.path) == 1
        assert proc.wait(timeout=5) == -9
        assert not ledger.path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_ledger_unwritable_never_blocks_or_fails_a_run(tmp_path, caplog) -> None:
    from clinvk.core.process import RunLedger

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ledger = RunLedger(blocker / "run" / "worker.runs")
    ledger.add(os.getpid())
    ledger.remove(os.getpid())
    assert ledger.flush()
    assert sum("cannot write the run ledger" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- backend priority


def _nice_of(pid: int) -> int:
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_backend_nice_lowers_the_whole_backend_group() -> None:
    from clinvk.core.process import Limits, ProcessRun

    own = os.getpriority(os.PRIO_PROCESS, 0)
    script = "import subprocess, sys; subprocess.Popen(['sleep', '30']); print('up', flush=True)"
    run = ProcessRun([sys.executable, "-c", script + "; import time; time.sleep(30)"],
                     limits=Limits(nice=7, timeout=20))
    lines = run.lines()
    try:
        assert next(lines) == "up"
        pid = run.proc.pid
        assert _nice_of(pid) == min(19, own + 7)
        members = [int(p) for p in os.listdir("/proc") if p.isdigit()
                   and _pgid_of(int(p)) == pid]
        assert len(members) == 2  # the grandchild inherited the niceness
        assert all(_nice_of(p) == min(19, own + 7) for p in members)
        autogroup = f"/proc/{pid}/autogroup"
        if os.path.exists(autogroup):  # Linux autogroup: the backend's session group too
            assert open(autogroup).read().split()[-1] == str(min(19, own + 7))
    finally:
        run.cancel()
        for _ in lines:
            pass
    assert ProcessRun(["true"]).limits.nice == 0  # default: unchanged priority


def _pgid_of(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def test_backend_nice_is_a_server_setting(tmp_path) -> None:
    from clinvk.core.config import load_config
    from clinvk.core.engine import Engine, PromptRequest
    from clinvk.core.errors import ConfigError

    config_file = tmp_path / "config.yaml"
    config_file.write_text("server:\n  backend_nice: 20\n")
    with pytest.raises(ConfigError):
        load_config(str(config_file), env={})
    config_file.write_text("server:\n  backend_nice: 10\n")
    config = load_config(str(config_file), env={})
    request = PromptRequest(prompt="hi", backend="claude", workdir=str(tmp_path),
                            dry_run=True)
    server = Engine(config, None, server_mode=True)
    assert server.limits(server.prepare(request)).nice == 10
    cli = Engine(config, None)
    assert cli.limits(cli.prepare(request)).nice == 0  # the CLI runs at the user's priority


def test_run_ledger_reads_start_times_off_the_request_path(tmp_path, monkeypatch) -> None:
    """add() does not read /proc (the writer does, after a pause); a leader that is gone
    by then is left out of the file and still removed cleanly."""
    import subprocess

    from clinvk.core.process import RunLedger, procfs

    reads: list[tuple[int, str]] = []
    real = procfs.start_time

    def spy(pid: int):
        reads.append((pid, threading.current_thread().name))
        return real(pid)

    monkeypatch.setattr(procfs, "start_time", spy)
    ledger = RunLedger(tmp_path / "worker.runs")
    alive = subprocess.Popen(["sleep", "30"], start_new_session=True)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    try:
        ledger.add(alive.pid, "m1")
        ledger.add(gone.pid, "m2")
        assert reads == []  # nothing read on the caller's thread
        assert ledger.flush()
        assert {name for _, name in reads} == {"clinvk-run-ledger"}
        assert ledger.path.read_text() == f"{alive.pid} {real(alive.pid)} m1\n"
        ledger.remove(gone.pid)
        ledger.remove(alive.pid)
        assert ledger.flush()
        assert ledger.path.read_text() == ""
    finally:
        alive.kill()
        alive.wait()
