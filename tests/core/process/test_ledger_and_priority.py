"""The crash ledger and backend priority, against real processes."""

from __future__ import annotations

import os
import sys
import threading

import pytest

# --------------------------------------------------------------------------- run ledger


def _ledger_lines(path) -> set[str]:
    """The entries of a ledger file (a blank slot is none)."""
    text = path.read_text() if path.exists() else ""
    return {" ".join(line.split()) for line in text.splitlines() if line.strip()}


def test_run_ledger_mirrors_concurrent_starts_and_ends(tmp_path) -> None:
    """Many runs starting and ending at once from many threads: each change is in the
    file when its call returns, and the last end leaves an empty file."""
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


def test_a_reused_leader_pid_without_the_run_marker_is_not_killed(tmp_path) -> None:
    """A group whose members lack the run's marker is someone else's (the run's leader
    pid was reused, e.g. by a sibling worker's CLI); the run's own group is killed."""
    import subprocess

    from clinvk.core.process import RunLedger, kill_orphaned_groups
    from clinvk.core.process.procfs import RUN_MARKER_VAR

    ours, theirs = "a" * 32, "b" * 32
    ledger = RunLedger(tmp_path / "worker.runs")
    run = subprocess.Popen(["sleep", "30"], start_new_session=True,
                           env={**os.environ, RUN_MARKER_VAR: ours})
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True,
                                env={**os.environ, RUN_MARKER_VAR: theirs})
    try:
        ledger.add(run.pid, ours)
        ledger.add(stranger.pid, ours)  # as if the stranger had taken a recorded pid
        assert kill_orphaned_groups(ledger.path) == 1
        assert run.wait(timeout=5) == -9
        assert stranger.poll() is None
    finally:
        for proc in (run, stranger):
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


def test_run_ledger_add_reads_no_proc_and_writes_before_returning(tmp_path,
                                                                  monkeypatch) -> None:
    """With the start bound taken before the spawn, add() reads nothing under /proc; each
    add and remove is in the file when it returns (one slot per run, reused), and the
    master's kill accepts the bound."""
    import subprocess

    from clinvk.core.process import RunLedger, kill_orphaned_groups, procfs
    from clinvk.core.process.ledger import SLOT_BYTES

    reads: list[int] = []
    real = procfs.start_time
    monkeypatch.setattr(procfs, "start_time", lambda pid: reads.append(pid) or real(pid))
    ledger = RunLedger(tmp_path / "worker.runs")
    since = procfs.boot_ticks()
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(3)]
    try:
        assert all(since <= real(p.pid) for p in procs)  # a lower bound of each start
        for i, p in enumerate(procs):
            ledger.add(p.pid, f"m{i}", since)
        assert reads == []
        assert _ledger_lines(ledger.path) == {f"{p.pid} {since} m{i}"
                                              for i, p in enumerate(procs)}
        assert ledger.path.stat().st_size == 3 * SLOT_BYTES
        ledger.remove(procs[1].pid)
        assert _ledger_lines(ledger.path) == {f"{procs[0].pid} {since} m0",
                                              f"{procs[2].pid} {since} m2"}
        ledger.add(procs[1].pid, "again", since)  # into the freed slot
        assert ledger.path.stat().st_size == 3 * SLOT_BYTES
        assert f"{procs[1].pid} {since} again" in _ledger_lines(ledger.path)
        assert kill_orphaned_groups(ledger.path) == 3
        assert [p.wait(timeout=5) for p in procs] == [-9, -9, -9]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_run_ledger_without_a_bound_reads_the_start_time(tmp_path) -> None:
    """add() without a bound reads the leader's start time; a leader already gone is left
    out (nothing to kill) and removed cleanly."""
    import subprocess

    from clinvk.core.process import RunLedger, procfs

    ledger = RunLedger(tmp_path / "worker.runs")
    alive = subprocess.Popen(["sleep", "30"], start_new_session=True)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    try:
        ledger.add(alive.pid, "m1")
        ledger.add(gone.pid, "m2")
        assert _ledger_lines(ledger.path) == {f"{alive.pid} {procfs.start_time(alive.pid)} m1"}
        ledger.remove(gone.pid)
        ledger.remove(alive.pid)
        assert ledger.path.read_text() == ""
    finally:
        alive.kill()
        alive.wait()


def test_run_ledger_written_again_once_writable(tmp_path, caplog) -> None:
    """A ledger that could not be opened writes every running entry once it can."""
    from clinvk.core.process import RunLedger

    blocker = tmp_path / "run"
    blocker.write_text("not a directory")
    ledger = RunLedger(blocker / "worker.runs")
    ledger.add(101, "m1", 5)
    assert sum("cannot write the run ledger" in r.getMessage() for r in caplog.records) == 1
    blocker.unlink()
    ledger.add(102, "m2", 6)
    assert _ledger_lines(ledger.path) == {"101 5 m1", "102 6 m2"}


def test_a_run_is_in_the_ledger_while_it_runs(tmp_path) -> None:
    """A ProcessRun under a ledger: its group is in the file from its start (bound taken
    before the spawn, no later than the leader's start) until it ends."""
    from clinvk.core.process import Limits, ProcessRun, RunLedger, procfs, state

    ledger = RunLedger(tmp_path / "worker.runs")
    previous = state.ledger
    state.use_ledger(ledger)
    try:
        run = ProcessRun([sys.executable, "-c", "print('up', flush=True); input()"],
                         stdin="", limits=Limits(timeout=20))
        lines = run.lines()
        assert next(lines) == "up"
        (entry,) = _ledger_lines(ledger.path)
        pid, since, marker = entry.split()
        assert int(pid) == run.proc.pid and marker == run.marker
        assert int(since) <= procfs.start_time(run.proc.pid)
        for _ in lines:
            pass
        assert ledger.path.read_text() == ""
    finally:
        state.use_ledger(previous)
