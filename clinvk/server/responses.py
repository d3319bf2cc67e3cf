"""JSON responses as every API of the gateway writes them.

Bodies are compact UTF-8 JSON, keys in the order the handler built them (no sorting, no
indentation: the field order is part of what docs/api.md shows), written by orjson; a body
orjson refuses (a non-string key, a ``Decimal``, a ``datetime``, an integer beyond 64 bits)
falls back to Flask's own provider, so such values serialise as they always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import Response, current_app

# datetime goes to the fallback: Flask writes it as an HTTP date, orjson as RFC 3339.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE


def envelope_enabled() -> bool:
    """Whether native bodies go in the ``{success, data|error}`` envelope (the default)."""
    state = current_app.extensions.get("clinvk")
    return bool(state is None or state.config.server.response_envelope)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> Response:
    """``body`` as compact JSON and one newline, with ``status`` and extra ``headers``."""
    response = current_app.response_class(json_bytes(body), status=status,
                                          mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def json_bytes(body: Any) -> bytes:
    """``body`` as compact UTF-8 JSON and one newline."""
    try:
        return orjson.dumps(body, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a type or key only the stdlib writes
        text = current_app.json.dumps(body, separators=(",", ":")) + "\n"
        return text.encode()


def json_response_with_items(body: Any, key: str, items: list[bytes]) -> Response:
    """``body`` as :func:`json_response` writes it, with the empty list under ``key`` (its
    first occurrence in the body, as ``"key":[]``) holding ``items``, each already one
    encoded JSON value: a listing's page without a Python object per item."""
    raw = json_bytes(body)
    marker = b'"' + key.encode() + b'":[]'
    at = raw.index(marker) + len(marker) - 1
    return current_app.response_class(raw[:at] + b",".join(items) + raw[at:], status=200,
                                      mimetype="application/json")
