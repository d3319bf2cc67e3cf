"""Is this text safe to hand to a CLI?

Everything a caller sends ends up as bytes: in the CLI's argv, its environment, its stdin,
or a row of the session store. Two kinds of Python ``str`` cannot make that trip:

* a lone surrogate (``"\\ud800"``, which JSON's ``\\u`` escapes can produce) is not a Unicode
  scalar value and has no UTF-8 encoding;
* a NUL character cannot be part of an argv entry or an environment value, and the CLIs
  read prompts as C strings.

The engine checks every text field of a request with :func:`check_request_text` before
anything is started or recorded, so such input is a clear 400 and never a half-started run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from clinvk.core.errors import InvalidRequest

MAX_REPORTED_FIELD = 120


def shown_path(where: str) -> str:
    """A field path fit for an error message: cut to length, and escaped where a key in it is
    itself text that cannot be encoded (it is shown, never echoed as is)."""
    return where[:MAX_REPORTED_FIELD].encode("utf-8", "backslashreplace").decode()


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be passed on, or ``None`` when it can."""
    if "\x00" in value:
        return "contains a NUL character, which cannot be passed to a CLI"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"contains a lone surrogate (U+{ord(value[exc.start]):04X} at index "
                f"{exc.start}): text must be valid Unicode")
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in ``value`` (keys included) with its dotted path; iterative."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str):
                    yield f"{where} (a key)", key
                stack.append((sub, f"{where}.{key}" if isinstance(key, str) else where))
        elif isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))


def check_text(value: Any, field: str) -> None:
    """Raise :class:`InvalidRequest` naming the first string in ``value`` that cannot pass."""
    for where, text in _strings(value, field):
        reason = text_problem(text)
        if reason:
            where = shown_path(where)
            raise InvalidRequest(f"{where} {reason}", field=where)
