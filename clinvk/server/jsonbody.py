"""Reading a JSON request body into Python values, with the gateway's limits.

Python's decoder accepts input that the rest of the gateway cannot handle:

* nesting as deep as the recursion limit allows (deeper is a ``RecursionError``), and every
  later walk over such a value is at risk too, so bodies deeper than
  ``server.max_json_depth`` are refused;
* ``\\ud800``-style escapes decode to lone surrogates, which have no UTF-8 form: they could
  reach neither a CLI nor the session store, so they are refused with the field's path.

Both are a 400 in the error format of the API the request came through.
"""

from __future__ import annotations

from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.textcheck import shown_path

DEFAULT_DEPTH = 64  # server.max_json_depth's default


def too_deep(max_depth: int, field: str = "body") -> InvalidRequest:
    return InvalidRequest(f"the JSON body is nested deeper than {max_depth} levels "
                          "(server.max_json_depth)", field=field)


def _field(path: list[str | int]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return shown_path(text or "body")


def _check_string(text: str, path: list[str | int], what: str = "") -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        field = _field(path)
        raise InvalidRequest(
            f"{field}{what} contains a lone surrogate (U+{ord(text[exc.start]):04X} at index "
            f"{exc.start}): text must be valid Unicode", field=field) from None


def check_value(value: Any, max_depth: int) -> None:
    """Refuse values nested deeper than ``max_depth`` and strings that are not valid Unicode."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, dict | list):
            if len(path) >= max_depth:
                raise too_deep(max_depth, _field(path[:8]))
            if isinstance(item, dict):
                for key, sub in item.items():
                    _check_string(key, [*path, key], " (a key)")
                    stack.append((sub, [*path, key]))
            else:
                stack.extend((sub, [*path, i]) for i, sub in enumerate(item))
