"""Why a backend process ended: one vocabulary for the runner, the engine and the edges."""

from __future__ import annotations

import enum


class EndReason(enum.StrEnum):
    """How a :class:`~clinvk.core.process.run.ProcessRun` ended.

    Members compare equal to their string values, so code and stored data that use the
    plain strings keep working.
    """

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    OUTPUT_LIMIT = "output_limit"
    LINE_LIMIT = "line_limit"
    LOST = "lost"  # a remote run whose agent host stopped answering (docs/deployment.md)


EXITED = EndReason.EXITED
TIMEOUT = EndReason.TIMEOUT
IDLE_TIMEOUT = EndReason.IDLE_TIMEOUT
CANCELLED = EndReason.CANCELLED
OUTPUT_LIMIT = EndReason.OUTPUT_LIMIT
LINE_LIMIT = EndReason.LINE_LIMIT
LOST = EndReason.LOST
