"""The engine: prepare a run, execute it, record the turn.

``requests`` (what goes in and comes out: :class:`PromptRequest`, :class:`PreparedRun`,
:class:`RunResult`), ``prepare`` (every check before anything starts), ``base`` (the
:class:`Engine`), ``handle`` (one run in progress: slot, process, events), ``recording``
(the session's lease and turn), ``outcome`` (status, error and terminal event of an ended
run), ``slots`` (the concurrency cap and the metrics hooks).
"""

from clinvk.core.engine.base import Engine
from clinvk.core.engine.handle import RunHandle
from clinvk.core.engine.requests import PreparedRun, PromptRequest, RunResult
from clinvk.core.engine.slots import EngineHooks, RunSlots
from clinvk.core.types import RunStatus

__all__ = [
    "Engine",
    "EngineHooks",
    "PreparedRun",
    "PromptRequest",
    "RunHandle",
    "RunResult",
    "RunSlots",
    "RunStatus",
]
