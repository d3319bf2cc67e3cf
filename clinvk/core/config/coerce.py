"""Turn a value from YAML, the environment, a flag or ``config set`` into a key's stored
form, or say why it cannot be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from clinvk.core.config.schema import BUILTIN_ALIASES
from clinvk.core.config.specs import Spec


class Invalid(Exception):
    """A value failed a type or range check; the text is the reason."""


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}".replace("True", "true").replace("False", "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {"str": "a string", "int": "an integer", "bool": "a boolean (true/false)",
             "list": "a list of strings", "map": "a mapping of string to string"}


def coerce(spec: Spec, value: Any) -> Any:
    """Check a structured value (YAML or Python) against its key; return the stored form."""
    if value is None:
        raise Invalid("no value given (remove the key to use the default)")
    ok = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v),
        "map": lambda v: isinstance(v, Mapping) and all(
            isinstance(k, str) and isinstance(i, str) for k, i in v.items()),
    }[spec.kind]
    if not ok(value):
        got = type_name(value)
        if spec.kind == "list" and isinstance(value, (list, tuple)):
            bad = next(i for i in value if not isinstance(i, str))
            got = f"a list containing {type_name(bad)} (quote it)"
        elif spec.kind == "str" and isinstance(value, (bool, int, float)):
            got += " (quote it to make it a string)"
        elif spec.kind == "map" and isinstance(value, Mapping):
            bad_k, bad_v = next((k, v) for k, v in value.items()
                                if not (isinstance(k, str) and isinstance(v, str)))
            got = f"{type_name(bad_v)} for {str(bad_k)!r} (quote it)"
        raise Invalid(f"expected {_EXPECTED[spec.kind]}, got {got}")
    if spec.kind == "list":
        value = tuple(value)
    elif spec.kind == "map":
        value = dict(value)
    if spec.norm:
        value = spec.norm(value)
    if spec.check:
        reason = spec.check(value)
        if reason:
            raise Invalid(reason)
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_text(spec: Spec, text: str) -> Any:
    """Turn a string (env variable, flag, ``config set``) into the key's type."""
    if spec.kind == "str":
        return text
    if spec.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise Invalid(f"expected an integer, got {text!r}") from None
    if spec.kind == "bool":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise Invalid(f"expected a boolean (true/false/1/0/yes/no), got {text!r}")
    if spec.kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    try:  # map: YAML/JSON flow mapping, e.g. {FOO: bar}
        parsed = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        raise Invalid(f"expected a mapping such as '{{NAME: value}}', got {text!r}") from None
    if not isinstance(parsed, dict):
        raise Invalid(f"expected a mapping such as '{{NAME: value}}', got {text!r}")
    return parsed


def merge_aliases(key: str, value: dict[str, str]) -> dict[str, str]:
    """Aliases are merged over the built-ins so a user adds or changes, never loses, them."""
    if key.endswith(".aliases"):
        backend = key.split(".")[1]
        return {**BUILTIN_ALIASES[backend], **value}
    return value
