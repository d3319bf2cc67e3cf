"""ProcessRun against real processes: limits, cancellation and the whole process group."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from clinvk.core.errors import BackendUnavailable
from clinvk.core.process import Limits, ProcessRun, active_runs, marked_pids, terminate_all
from clinvk.core.types import EndReason

PY = sys.executable


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def grandchild_script(pidfile: str) -> str:
    """A child and a grandchild that both ignore SIGTERM; the grandchild's pid goes to a file."""
    return (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({pidfile!r}, 'w').write(str(g.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )


def test_lines_exit_code_and_stderr_tail():
    run = ProcessRun(["bash", "-c", "echo a; echo b; echo oops >&2; exit 3"])
    assert list(run.lines()) == ["a", "b"]
    assert run.outcome.exit_code == 3 and run.outcome.reason == EndReason.EXITED
    assert "oops" in run.outcome.stderr_tail


def test_prompt_on_stdin_small_and_large():
    assert list(ProcessRun(["cat"], stdin="--help\n-p x").lines()) == ["--help", "-p x"]
    big = "y" * 300_000
    assert list(ProcessRun(["cat"], stdin=big + "\n").lines()) == [big]


def test_timeout_kills_group_with_sigterm_ignoring_grandchild(tmp_path):
    pidfile = str(tmp_path / "grandchild.pid")
    run = ProcessRun([PY, "-c", grandchild_script(pidfile)], limits=Limits(timeout=1))
    started = time.monotonic()
    assert list(run.lines()) == ["started"]
    elapsed = time.monotonic() - started
    assert run.outcome.reason == EndReason.TIMEOUT
    assert elapsed < 1 + 2, elapsed  # gone within 2 s of the timeout
    grandchild = int(open(pidfile).read())
    deadline = time.monotonic() + 2
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(grandchild)
    assert not pid_alive(run.outcome.pid)


def test_idle_watchdog():
    run = ProcessRun(["bash", "-c", "echo x; sleep 30"], limits=Limits(idle_timeout=0.5))
    assert list(run.lines()) == ["x"]
    assert run.outcome.reason == EndReason.IDLE_TIMEOUT


def test_output_and_line_caps():
    big = ProcessRun([PY, "-c", "print('z' * 3_000_000)"], limits=Limits(max_line_bytes=100_000))
    assert list(big.lines()) == [] and big.outcome.reason == EndReason.LINE_LIMIT
    many = ProcessRun([PY, "-c", "import sys\nfor _ in range(10**6): print('line')"],
                      limits=Limits(max_output_bytes=50_000))
    lines = list(many.lines())
    assert many.outcome.reason == EndReason.OUTPUT_LIMIT and len(lines) < 20_000


def test_cancel_from_another_thread():
    run = ProcessRun(["sleep", "30"])
    threading.Timer(0.2, run.cancel).start()
    started = time.monotonic()
    assert list(run.lines()) == []
    assert run.outcome.reason == EndReason.CANCELLED
    assert time.monotonic() - started < 2


def test_consumer_stopping_early_kills_the_group():
    run = ProcessRun(["bash", "-c", "echo 1; sleep 30"])
    lines = run.lines()
    assert next(lines) == "1"
    lines.close()
    assert run.outcome.reason == EndReason.CANCELLED
    assert not pid_alive(run.outcome.pid)


def test_leftover_grandchild_after_normal_exit_is_removed(tmp_path):
    script = "(sleep 30) & echo $! > {}; echo done".format(tmp_path / "pid")
    run = ProcessRun(["bash", "-c", script])
    assert list(run.lines()) == ["done"]
    assert run.outcome.reason == EndReason.EXITED and run.outcome.exit_code == 0
    leftover = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 2
    while pid_alive(leftover) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(leftover)


def test_heartbeats_while_silent():
    items = list(ProcessRun(["bash", "-c", "sleep 0.6; echo z"]).lines(heartbeat=0.2))
    assert items[-1] == "z" and items.count(None) >= 2


def test_missing_binary_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable):
        ProcessRun([str(tmp_path / "nope")]).start()


def test_a_prompt_that_cannot_be_encoded_fails_before_anything_is_spawned():
    run = ProcessRun([PY, "-c", "import time; time.sleep(30)"], stdin="hi \ud800")
    with pytest.raises(UnicodeEncodeError):
        run.start()
    assert run.proc is None
    assert marked_pids(run.marker) == []
    assert run not in active_runs()


def test_a_failure_after_the_spawn_kills_the_child(monkeypatch):
    """Whatever fails once the child exists (here: registering it), the child dies with it."""
    from clinvk.core.process import state

    class Boom(RuntimeError):
        pass

    def refuse(*_args):
        raise Boom("ledger refused")

    class Ledger:  # a crash ledger whose write fails (a full disk, say)
        add = staticmethod(refuse)

        @staticmethod
        def remove(_pid):
            pass

    monkeypatch.setattr(state, "ledger", Ledger())
    run = ProcessRun([PY, "-c", "import time; time.sleep(30)"], stdin="hi")
    with pytest.raises(Boom):
        run.start()
    assert run.proc is not None and run.proc.poll() is not None
    assert not pid_alive(run.proc.pid)
    assert run not in active_runs()


def test_terminate_all_reaches_every_active_run():
    runs = [ProcessRun(["sleep", "30"]) for _ in range(3)]
    for run in runs:
        run.start()
    results: list[list] = []
    threads = [threading.Thread(target=lambda r=r: results.append(list(r.lines())))
               for r in runs]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert terminate_all() >= 3
    for t in threads:
        t.join(5)
    assert all(r.outcome and r.outcome.reason == EndReason.CANCELLED for r in runs)
    assert not [r for r in active_runs() if r in runs]


def test_no_file_descriptor_leak():
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        list(ProcessRun(["true"]).lines())
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_timeout_also_kills_descendants_that_left_the_group(tmp_path):
    """The real CLIs start tool shells with setsid; those must die with the run too."""
    pidfile = tmp_path / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo started; sleep 60"
    run = ProcessRun(["bash", "-c", script], limits=Limits(timeout=1))
    assert list(run.lines()) == ["started"]
    assert run.outcome.reason == EndReason.TIMEOUT
    escaped = int(pidfile.read_text())
    assert os.getpgid(escaped) != run.outcome.pid if pid_alive(escaped) else True
    deadline = time.monotonic() + 2
    while pid_alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(escaped)


def escaping_script(pidfile) -> str:
    """A shell that starts a setsid'd sleeper (own session, stdio closed) and exits 0."""
    return (f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' </dev/null >/dev/null 2>&1 & "
            f"while [ ! -s {pidfile} ]; do sleep 0.01; done; echo done")


def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not pid_alive(pid)


def test_normal_end_kills_descendants_that_left_the_group(tmp_path):
    """A run that exits normally leaves nothing behind, also not a setsid'd tool process;
    a process of a run still going (another marker) is not touched."""
    from clinvk.core.process import wait_for_leftover_sweeps

    still_running = ProcessRun(["bash", "-c", escaping_script(tmp_path / "a.pid") +
                                "; sleep 60"])
    lines = still_running.lines()
    assert next(lines) == "done"
    kept = int((tmp_path / "a.pid").read_text())

    run = ProcessRun(["bash", "-c", escaping_script(tmp_path / "b.pid")])
    assert list(run.lines()) == ["done"]
    assert run.outcome.reason == EndReason.EXITED and run.outcome.exit_code == 0
    escaped = int((tmp_path / "b.pid").read_text())
    assert wait_for_leftover_sweeps(5)
    assert wait_dead(escaped)
    assert pid_alive(kept)  # its run is still going

    still_running.cancel()
    list(lines)
    assert still_running.outcome.reason == EndReason.CANCELLED
    assert wait_dead(kept)


def test_orphaned_ledger_kills_escaped_descendants_too(tmp_path):
    """A crashed worker's ledger: the master kills its groups and the runs' setsid'd tools."""
    import subprocess
    import uuid

    from clinvk.core.process import RUN_MARKER_VAR, RunLedger, kill_orphaned_groups

    marker = uuid.uuid4().hex
    pidfile = tmp_path / "escaped.pid"
    leader = subprocess.Popen(
        ["bash", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & sleep 60"],
        start_new_session=True, env={**os.environ, RUN_MARKER_VAR: marker})
    try:
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        escaped = int(pidfile.read_text())
        ledger = RunLedger(tmp_path / "worker.runs")
        ledger.add(leader.pid, marker)
        assert ledger.flush()
        assert kill_orphaned_groups(ledger.path) == 1
        leader.wait(timeout=5)
        deadline = time.monotonic() + 2
        while pid_alive(escaped) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(escaped)
    finally:
        leader.kill()
        leader.wait()


def test_leftover_scans_are_spaced_and_batch_the_runs_that_ended_meanwhile(monkeypatch):
    """Under load one scan serves every run that ended since the previous one, and scans
    start at least SWEEP_INTERVAL_SECS apart (each reads every process's environment)."""
    from clinvk.core.process import procfs, sweeper

    scans: list[tuple[float, set[str]]] = []
    scanned = threading.Event()

    def record(markers: set[str]) -> list[int]:
        scans.append((time.monotonic(), set(markers)))
        scanned.set()
        return []

    monkeypatch.setattr(procfs, "pids_marked_with", record)
    sweeps = sweeper.LeftoverSweeper()
    sweeps.sweep("a")
    assert scanned.wait(5)
    sweeps.sweep("b")
    sweeps.sweep("c")
    deadline = time.monotonic() + 5
    while len(scans) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [markers for _, markers in scans] == [{"a"}, {"b", "c"}]
    assert scans[1][0] - scans[0][0] >= sweeper.SWEEP_INTERVAL_SECS - 0.01
