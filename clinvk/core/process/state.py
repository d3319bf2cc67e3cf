"""Process-wide runner state: the active runs, the current crash ledger, the sweeper.

One instance of each per Python process; :class:`~clinvk.core.process.run.ProcessRun`
registers itself here while its child runs, so shutdown paths can reach every backend.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import TYPE_CHECKING

from clinvk.core.process.ledger import RunLedger
from clinvk.core.process.sweeper import LeftoverSweeper
from clinvk.core.types import EndReason

if TYPE_CHECKING:
    from clinvk.core.process.run import ProcessRun

_active: weakref.WeakSet[ProcessRun] = weakref.WeakSet()
_active_lock = threading.Lock()

#: Where running backends are mirrored (None: nowhere); set with :func:`use_ledger`.
ledger: RunLedger | None = None

leftovers = LeftoverSweeper()
# A CLI process exits right after its run: give the sweep of that run a moment first.
atexit.register(lambda: leftovers.wait(1.0))


def register(run: ProcessRun) -> None:
    with _active_lock:
        _active.add(run)


def unregister(run: ProcessRun) -> None:
    with _active_lock:
        _active.discard(run)


def active_runs() -> list[ProcessRun]:
    with _active_lock:
        return list(_active)


def terminate_all(reason: EndReason = EndReason.CANCELLED) -> int:
    """Cancel every running backend process of this server process (used at shutdown)."""
    runs = active_runs()
    for run in runs:
        run.cancel(reason)
    return len(runs)


def use_ledger(new: RunLedger | None) -> None:
    """Mirror this process's running backends in ``new`` (None: stop doing so)."""
    global ledger
    ledger = new


def wait_for_leftover_sweeps(timeout: float = 2.0) -> bool:
    """Block until processes left behind by finished runs have been looked for."""
    return leftovers.wait(timeout)
