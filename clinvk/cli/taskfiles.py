"""Task and step files for ``clinvk parallel`` and ``clinvk chain``.

A file is JSON or YAML (by extension; anything else, and stdin, is tried as JSON first,
then YAML). Every field is checked here, so a mistake is reported as
``<file>: tasks[2] ("lint"): max_turns: expected ...`` before anything runs. Unknown fields
are errors, not silently ignored (the Go tool dropped them).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from clinvk.core.backends.base import APPROVAL_MODES, SANDBOX_MODES
from clinvk.core.engine import PromptRequest
from clinvk.core.errors import InvalidRequest
from clinvk.core.orchestrate import ChainStep

__all__ = ["ChainFile", "ParallelFile", "Task", "load_chain_file", "load_parallel_file",
           "parse_document"]


@dataclass
class Task:
    request: PromptRequest
    name: str | None


@dataclass
class ParallelFile:
    tasks: list[Task]
    max_parallel: int | None = None
    fail_fast: bool | None = None


@dataclass
class ChainFile:
    steps: list[ChainStep]
    stop_on_failure: bool | None = None
    pass_working_dir: bool | None = None


class _Bad(Exception):
    """A value failed its check; the text is the reason."""


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {_describe(value)}")
    return value


def _non_empty(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        raise _Bad("must not be empty")
    return text


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_describe(value)}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"expected a non-negative integer, got {_describe(value)}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad(f"expected an integer >= 1, got {_describe(value)}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _Bad(f"expected a positive number of seconds, got {_describe(value)}")
    return float(value)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise _Bad(f"expected one of {', '.join(options)}, got {_describe(value)}")
        return value

    return check


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _Bad(f"expected a list of strings, got {_describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Bad(f"item {i}: expected a string, got {_describe(item)}")
    return list(value)


def _ephemeral(value: Any) -> bool:
    if value is not True:
        raise _Bad("tasks and steps always run ephemeral; remove the field or set it to true")
    return True


# file key -> (PromptRequest attribute or None for display-only keys, check)
_TASK_FIELDS: dict[str, tuple[str | None, Callable[[Any], Any]]] = {
    "backend": ("backend", _non_empty),
    "prompt": ("prompt", _non_empty),
    "model": ("model", _string),
    "workdir": ("workdir", _non_empty),
    "approval_mode": ("approval_mode", _choice(APPROVAL_MODES)),
    "sandbox_mode": ("sandbox_mode", _choice(SANDBOX_MODES)),
    "max_turns": ("max_turns", _count),
    "max_tokens": ("max_tokens", _count),
    "system_prompt": ("system_prompt", _string),
    "verbose": ("verbose", _boolean),
    "dry_run": ("dry_run", _boolean),
    "extra": ("extra_flags", _string_list),
    "timeout_secs": ("timeout_secs", _seconds),
    "ephemeral": (None, _ephemeral),
    "name": (None, _string),
    "id": (None, _string),
}

_PARALLEL_KEYS: dict[str, Callable[[Any], Any]] = {
    "tasks": lambda v: v,
    "max_parallel": _positive_int,
    "fail_fast": _boolean,
}
_CHAIN_KEYS: dict[str, Callable[[Any], Any]] = {
    "steps": lambda v: v,
    "stop_on_failure": _boolean,
    "pass_working_dir": _boolean,
}


def _unknown(key: Any, allowed: list[str]) -> str:
    hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown field {str(key)!r}{did_you_mean}; allowed: {', '.join(allowed)}"


def parse_document(text: str, source: str) -> Any:
    """JSON or YAML text to Python data, with the line of a syntax error in the message."""
    lower = source.lower()
    if lower.endswith(".json"):
        kinds = ("json",)
    elif lower.endswith((".yaml", ".yml")):
        kinds = ("yaml",)
    else:
        kinds = ("json", "yaml")
    if not text.strip():
        raise InvalidRequest(f"{source}: the file is empty")
    errors = []
    for kind in kinds:
        try:
            if kind == "json":
                return json.loads(text)
            return yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            errors.append(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            errors.append(f"invalid YAML{where}: {problem}")
    # Both tried: JSON-looking text gets the JSON message, anything else the YAML one.
    message = errors[0] if text.lstrip()[:1] in ("{", "[") else errors[-1]
    raise InvalidRequest(f"{source}: {message}")


def _split(data: Any, source: str, list_key: str,
           keys: dict[str, Callable[[Any], Any]]) -> tuple[list[Any], dict[str, Any]]:
    """The item list and checked top-level options of a ``{list_key: [...]}`` or bare list."""
    if isinstance(data, list):
        items, options = data, {}
    elif isinstance(data, dict):
        options = {}
        for key, value in data.items():
            if key not in keys:
                raise InvalidRequest(f"{source}: {_unknown(key, list(keys))}", field=str(key))
            if key == list_key:
                continue
            try:
                options[key] = keys[key](value)
            except _Bad as exc:
                raise InvalidRequest(f"{source}: {key}: {exc}", field=key) from None
        if list_key not in data:
            raise InvalidRequest(f"{source}: missing {list_key!r} (a list of {list_key})",
                                 field=list_key)
        items = data[list_key]
        if not isinstance(items, list):
            raise InvalidRequest(
                f"{source}: {list_key}: expected a list, got {_describe(items)}", field=list_key)
    else:
        raise InvalidRequest(
            f"{source}: expected an object with {list_key!r} or a list of {list_key}, "
            f"got {_describe(data)}")
    if not items:
        raise InvalidRequest(f"{source}: {list_key}: the list is empty", field=list_key)
    return items, options


def _task(item: Any, index: int, source: str, list_key: str, base_dir: str) -> Task:
    where = f"{source}: {list_key}[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where}: expected an object, got {_describe(item)}",
                             field=list_key)
    label = item.get("name") or item.get("id")
    if isinstance(label, str) and label:
        where += f" ({label!r})"
    values: dict[str, Any] = {}
    name = None
    allowed = list(_TASK_FIELDS)
    for key, value in item.items():
        if key not in _TASK_FIELDS:
            raise InvalidRequest(f"{where}: {_unknown(key, allowed)}", field=str(key))
        attr, check = _TASK_FIELDS[key]
        try:
            checked = check(value)
        except _Bad as exc:
            raise InvalidRequest(f"{where}: {key}: {exc}", field=key) from None
        if attr is not None:
            values[attr] = checked
        elif key == "name" or (key == "id" and name is None):
            name = checked or name
    if "prompt" not in values:
        raise InvalidRequest(f"{where}: prompt: missing (every entry needs a prompt)",
                             field="prompt")
    workdir = values.get("workdir")
    if workdir is not None:
        # Relative paths are relative to the file that names them (stdin: the cwd).
        values["workdir"] = os.path.normpath(os.path.join(base_dir, os.path.expanduser(workdir)))
    return Task(PromptRequest(**values), name)


def _read(path: str, stdin_text: Callable[[], str]) -> tuple[Any, str, str]:
    if path == "-":
        return parse_document(stdin_text(), "<stdin>"), "<stdin>", os.getcwd()
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"{path}: the file is not UTF-8 text") from None
    base = os.path.dirname(os.path.abspath(path))
    return parse_document(text, path), path, base


def load_parallel_file(path: str, stdin_text: Callable[[], str]) -> ParallelFile:
    data, source, base = _read(path, stdin_text)
    items, options = _split(data, source, "tasks", _PARALLEL_KEYS)
    tasks = [_task(item, i, source, "tasks", base) for i, item in enumerate(items)]
    return ParallelFile(tasks, options.get("max_parallel"), options.get("fail_fast"))


def load_chain_file(path: str, stdin_text: Callable[[], str]) -> ChainFile:
    data, source, base = _read(path, stdin_text)
    items, options = _split(data, source, "steps", _CHAIN_KEYS)
    steps = []
    for i, item in enumerate(items):
        task = _task(item, i, source, "steps", base)
        steps.append(ChainStep(task.request, task.name))
    return ChainFile(steps, options.get("stop_on_failure"), options.get("pass_working_dir"))
