"""Stored responses: what a client can look up again by the id a dialect API handed out.

A record keeps what the caller asked (opaque JSON the edge wrote: model, instructions, input
items …) and either the finished answer (a turn that ran in the foreground) or the id of the
job that runs it (a background turn, whose state lives on the job). The records live in the
store beside the job tables (``Store.responses``); ownership is the creating key's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ResponseRecord:
    id: str
    owner: str | None
    request: dict[str, Any]
    job_id: str | None = None
    session_id: str | None = None
    body: dict[str, Any] | None = None
    created_epoch: float = 0.0
