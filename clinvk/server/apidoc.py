"""Error responses in the OpenAPI document without a layer at request time.

flask-smorest's ``alt_response`` wraps the view once per documented status, and every
wrapper runs on every request. The error statuses of a route are therefore documented
with one ``Blueprint.doc`` (flask-smorest's manual documentation, merged verbatim into the
operation), which adds a single wrapper whatever the number of statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["error_responses"]


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def error_responses(blp: Any, schema: Any, statuses: Mapping[int, str],
                    default: str | None = None) -> Decorator:
    """Document ``schema`` as the JSON body of each status (and of ``default``, any other)."""

    def body(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    responses: dict[int | str, Any] = {status: body(text) for status, text in statuses.items()}
    if default is not None:
        responses["default"] = body(default)
    return blp.doc(responses=responses)
