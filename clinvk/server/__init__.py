"""The HTTP edge of clinvk: a Flask app with one blueprint per API style.

``create_app`` (in :mod:`clinvk.server.app`) builds the app; ``clinvk serve``
(:mod:`clinvk.server.runtime.serve`) runs it under gunicorn. Handlers are thin: they parse a
request into an engine call and render what comes back.
"""

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


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - see clinvk.server.app.create_app
    """Build the Flask app (lazy import keeps ``import clinvk.server`` light)."""
    from clinvk.server.app import create_app as factory

    return factory(*args, **kwargs)


__all__ = ["EXTENSION_KEY", "Gateway", "create_app", "current_gateway"]
