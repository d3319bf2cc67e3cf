"""The per-app state every blueprint reads: one engine, its store and the job service."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from clinvk.core.config import Config
    from clinvk.core.engine import Engine
    from clinvk.core.jobs import JobService
    from clinvk.core.store import Store

EXTENSION_KEY = "clinvk"


@dataclass
class Gateway:
    """Per-app state shared by every blueprint (one engine per app; it is thread-safe)."""

    config: Config
    store: Store
    engine: Engine
    jobs: JobService | None = None
    started: float = field(default_factory=time.monotonic)


def current_gateway() -> Gateway:
    return current_app.extensions[EXTENSION_KEY]
