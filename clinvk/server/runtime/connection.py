"""The gunicorn request behind the current WSGI call, so the app can close its connection."""

from __future__ import annotations

import threading
from typing import Any

_gunicorn_request = threading.local()


def remember_request(worker: Any, req: Any) -> None:
    """gunicorn ``pre_request`` hook: lets the app ask for the connection to be closed."""
    _gunicorn_request.current = req


def close_after_response() -> None:
    """Close the connection after this response instead of draining an unread body.

    gunicorn would otherwise read (and discard) the rest of a refused upload before the
    next request on the connection; a client declaring gigabytes could keep a thread busy.
    """
    req = getattr(_gunicorn_request, "current", None)
    if req is not None and hasattr(req, "must_close"):
        req.must_close = True


