"""The flat key table built from the schema: dotted key, kind, default, check, and the
environment variable that overrides it; lookups and suggestions for unknown keys."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clinvk.core.config.checks import Check, one_of
from clinvk.core.config.schema import (
    KNOWN_BACKENDS,
    SECTION_CLASSES,
    SECTIONS,
    BackendConfig,
    ServerConfig,
    default_backends,
)

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MASK = "****"

def env_var_for(dotted_key: str) -> str:
    """Environment variable overriding a key: ``server.port`` -> ``CLINVK_SERVER_PORT``."""
    return "CLINVK_" + dotted_key.upper().replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class Spec:
    key: str           # dotted key, e.g. "server.port" or "backends.claude.model"
    kind: str          # str | int | bool | list | map
    default: Any
    doc: str
    check: Check | None = None
    norm: Callable[[Any], Any] | None = None

    @property
    def env_var(self) -> str | None:
        return None if self.kind == "map" else env_var_for(self.key)


_KIND_BY_TYPE = {str: "str", int: "int", bool: "bool"}


def _kind(tp: Any) -> str:
    if tp in _KIND_BY_TYPE:
        return _KIND_BY_TYPE[tp]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "list"
    if origin is dict:
        return "map"
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover - schema bug


def _field_specs(cls: type, prefix: str, defaults: Any) -> list[Spec]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        specs.append(Spec(
            key=f"{prefix}.{f.name}", kind=_kind(hints[f.name]),
            default=getattr(defaults, f.name), doc=f.metadata["doc"],
            check=f.metadata["check"], norm=f.metadata["norm"]))
    return specs


def _build_specs() -> dict[str, Spec]:
    specs = [Spec("default_backend", "str", "claude",
                   "Backend used when none is named.", check=one_of(KNOWN_BACKENDS))]
    specs += _field_specs(ServerConfig, "server", ServerConfig())
    for name, backend in default_backends().items():
        specs += _field_specs(BackendConfig, f"backends.{name}", backend)
    for section in ("unified_flags", "session", "output", "parallel", "execution", "store"):
        cls = SECTION_CLASSES[section]
        specs += _field_specs(cls, section, cls())
    return {s.key: s for s in specs}


SPECS: dict[str, Spec] = _build_specs()
ENV_TO_KEY: dict[str, str] = {s.env_var: k for k, s in SPECS.items() if s.env_var}
MAP_ENV_VARS: dict[str, str] = {env_var_for(k): k for k, s in SPECS.items() if s.kind == "map"}
#: Legacy variable names of the Go tool; the canonical CLINVK_<SECTION>_<KEY> name wins.
LEGACY_ENV: dict[str, str] = {
    "CLINVK_BACKEND": "default_backend",
    "CLINVK_CLAUDE_MODEL": "backends.claude.model",
    "CLINVK_CODEX_MODEL": "backends.codex.model",
    "CLINVK_GEMINI_MODEL": "backends.gemini.model",
    "CLINVK_API_KEYS_GOPASS_PATH": "server.api_keys_gopass_path",
}
#: Variables under these prefixes are config overrides; an unknown one is a typo, not ignored.
RESERVED_ENV_PREFIXES = tuple(
    f"CLINVK_{p}_" for p in ("SERVER", "UNIFIED_FLAGS", "SESSION", "OUTPUT", "PARALLEL", "BACKENDS",
                        "EXECUTION")
)


def is_secret_name(name: str) -> bool:
    """True for variable names that look like credentials (masked in ``config show``)."""
    return bool(_SECRET_NAME.search(name))


def key_reference() -> list[dict[str, Any]]:
    """Every key with type, default, meaning and env variable (for docs and ``--help``)."""
    rows = []
    for spec in SPECS.values():
        default = spec.default
        if isinstance(default, tuple):
            default = list(default)
        rows.append({"key": spec.key, "type": spec.kind, "default": default,
                     "doc": spec.doc, "env": spec.env_var})
    return rows


def suggest(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_key_reason(dotted: str) -> str:
    """Explain an unknown dotted key, suggesting the closest known one."""
    prefix, _, leaf = dotted.rpartition(".")
    if prefix:
        siblings = {k.rpartition(".")[2]: k for k in SPECS if k.rpartition(".")[0] == prefix}
    else:
        siblings = {k: k for k in SPECS if "." not in k} | {s: s for s in SECTIONS}
    match = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if match:
        return f"unknown key (did you mean {siblings[match[0]]!r}?)"
    elsewhere = [k for k in SPECS if k.rpartition(".")[2] == leaf]
    if elsewhere:
        return f"unknown key (did you mean {elsewhere[0]!r}?)"
    return "unknown key"


def split_map_entry(dotted: str) -> tuple[str, str] | None:
    """``backends.claude.env.FOO`` -> (``backends.claude.env``, ``FOO``), else None."""
    parts = dotted.split(".")
    if len(parts) == 4 and parts[0] == "backends":
        base = ".".join(parts[:3])
        if base in SPECS and SPECS[base].kind == "map" and parts[3]:
            return base, parts[3]
    return None
