"""JSON responses as every API of the gateway writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, current_app


def envelope_enabled() -> bool:
    """Whether native bodies go in the ``{success, data|error}`` envelope (the default)."""
    state = current_app.extensions.get("clinvk")
    return bool(state is None or state.config.server.response_envelope)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> Response:
    """``body`` as compact JSON and one newline, with ``status`` and extra ``headers``."""
    text = current_app.json.dumps(body, separators=(",", ":")) + "\n"
    response = current_app.response_class(text, status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
