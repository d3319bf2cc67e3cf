"""Backend subprocesses: spawn, read with limits, stop the whole tree, clean up after crashes.

``run`` (one process), ``terminate`` (the TERM -> grace -> KILL ladder), ``procfs`` (every
/proc read), ``sweeper`` (leftovers of runs that ended normally), ``ledger`` (what a killed
worker left behind), ``state`` (the process-wide registry of running backends).
"""

from clinvk.core.process.ledger import RunLedger, kill_orphaned_groups
from clinvk.core.process.procfs import RUN_MARKER_VAR, marked_pids
from clinvk.core.process.run import Limits, ProcessOutcome, ProcessRun
from clinvk.core.process.state import (
    active_runs,
    terminate_all,
    use_ledger,
    wait_for_leftover_sweeps,
)
from clinvk.core.process.terminate import lower_priority

__all__ = [
    "RUN_MARKER_VAR",
    "Limits",
    "ProcessOutcome",
    "ProcessRun",
    "RunLedger",
    "active_runs",
    "kill_orphaned_groups",
    "lower_priority",
    "marked_pids",
    "terminate_all",
    "use_ledger",
    "wait_for_leftover_sweeps",
]
