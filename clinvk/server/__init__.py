"""The HTTP edge of clinvk: a Flask app with one blueprint per API style.

``create_app`` (in :mod:`clinvk.server.app`) builds the app; ``clinvk serve``
(:mod:`clinvk.server.runtime.serve`) runs it under gunicorn. Handlers are thin: they parse a
request into an engine call and render what comes back.

Importing this package imports nothing else: the gunicorn master of ``clinvk serve`` loads
only :mod:`clinvk.server.runtime`, and each worker builds the app (see docs/performance.md,
idle memory).
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the Flask app (see :func:`clinvk.server.app.create_app`)."""
    from clinvk.server.app import create_app as factory

    return factory(*args, **kwargs)


__all__ = ["create_app"]
