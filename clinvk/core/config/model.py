"""The effective configuration (:class:`Config`) and how a flat, checked key mapping
becomes one: overrides, the rules spanning several keys, and the build."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinvk.core.config.checks import mask_url_password
from clinvk.core.config.coerce import Invalid, coerce, merge_aliases, parse_text, type_name
from clinvk.core.config.problems import Problem, origin_text, raise_problems
from clinvk.core.config.schema import (
    KNOWN_BACKENDS,
    SECTION_CLASSES,
    BackendConfig,
    ExecutionConfig,
    OutputConfig,
    ParallelConfig,
    ServerConfig,
    SessionConfig,
    StoreConfig,
    UnifiedFlagsConfig,
    default_backends,
)
from clinvk.core.config.specs import (
    MASK,
    SPECS,
    is_secret_name,
    split_map_entry,
    unknown_key_reason,
)
from clinvk.core.errors import ConfigError


@dataclass(frozen=True)
class Config:
    """The effective configuration; ``sources[key]`` says where each value came from."""

    default_backend: str = "claude"
    server: ServerConfig = field(default_factory=ServerConfig)
    backends: dict[str, BackendConfig] = field(default_factory=default_backends)
    unified_flags: UnifiedFlagsConfig = field(default_factory=UnifiedFlagsConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    #: The file that was read (None if no file was read).
    path: Path | None = field(default=None, compare=False)

    def get(self, dotted_key: str) -> Any:
        """Value of a dotted key (``server.port``, ``backends.claude.env.FOO``); sections too."""
        if dotted_key in SPECS:
            return self._flat()[dotted_key]
        entry = split_map_entry(dotted_key)
        if entry:
            mapping = self._flat()[entry[0]]
            if entry[1] in mapping:
                return mapping[entry[1]]
            raise ConfigError(f"{dotted_key}: not set", field=dotted_key)
        node: Any = self
        for part in dotted_key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif dataclasses.is_dataclass(node) and part in {f.name for f in
                                                             dataclasses.fields(node)}:
                node = getattr(node, part)
            else:
                raise ConfigError(f"{dotted_key}: {unknown_key_reason(dotted_key)}",
                                  field=dotted_key)
        return node

    def with_overrides(self, mapping: Mapping[str, Any], source: str = "flag") -> Config:
        """A new Config with dotted keys overridden (e.g. from CLI flags); None = not given.

        Values may be typed (``9000``) or strings parsed like environment values (``"9000"``).
        """
        flat = self._flat()
        sources = dict(self.sources)
        problems: list[Problem] = []
        for key, value in mapping.items():
            if value is None:
                continue
            apply_override(flat, sources, problems, key, value, source, origin_text(source),
                   from_text=isinstance(value, str))
        return build(flat, sources, problems, path=self.path)

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) in the config file's shape."""
        out: dict[str, Any] = {}
        for key, value in self._flat().items():
            if mask_secrets and key.endswith("_secret") and value:
                value = MASK
            elif isinstance(value, tuple):
                value = list(value)
            elif mask_secrets and isinstance(value, str) and (
                    key.endswith("_url") or key == "store.url"):
                value = mask_url_password(value, MASK)
            elif isinstance(value, dict):
                value = dict(value)
                if mask_secrets and key.endswith(".env"):
                    value = {k: (MASK if v and is_secret_name(k) else v)
                             for k, v in value.items()}
            node = out
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out

    def describe(self, mask_secrets: bool = True) -> list[tuple[str, Any, str]]:
        """(key, value, source) for every key, for ``clinvk config show``."""
        flat_dict = self.to_dict(mask_secrets=mask_secrets)
        rows = []
        for key in SPECS:
            node: Any = flat_dict
            for part in key.split("."):
                node = node[part]
            rows.append((key, node, self.sources.get(key, "default")))
        return rows

    def _flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"default_backend": self.default_backend}
        for section in SECTION_CLASSES:
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):
                flat[f"{section}.{f.name}"] = getattr(obj, f.name)
        for name in KNOWN_BACKENDS:
            obj = self.backends[name]
            for f in dataclasses.fields(obj):
                flat[f"backends.{name}.{f.name}"] = getattr(obj, f.name)
        return flat


def apply_override(flat: dict[str, Any], sources: dict[str, str], problems: list[Problem],
           key: str, value: Any, source: str, origin: str, *, from_text: bool) -> None:
    """Validate one override and store it in ``flat``; record a problem instead on failure."""
    entry = split_map_entry(key)
    spec = SPECS.get(entry[0] if entry else key)
    if spec is None:
        problems.append(Problem(origin, key, unknown_key_reason(key)))
        return
    try:
        if entry:
            if not isinstance(value, str):
                raise Invalid(f"expected a string, got {type_name(value)}")
            new = coerce(spec, {**flat[spec.key], entry[1]: value})
        else:
            raw = parse_text(spec, value) if from_text else value
            new = coerce(spec, raw)
            if spec.kind == "map":
                new = merge_aliases(spec.key, new)
    except Invalid as exc:
        problems.append(Problem(origin, key, str(exc)))
        return
    flat[spec.key] = new
    sources[spec.key] = source


def _cross_checks(flat: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Rules that involve several keys: (key to blame, all keys involved, reason)."""
    out = []
    if flat["server.rate_limit_enabled"]:
        for key in ("server.rate_limit_rps", "server.rate_limit_burst"):
            if flat[key] < 1:
                out.append((key, (key, "server.rate_limit_enabled"),
                            "must be >= 1 when server.rate_limit_enabled is true, "
                            f"got {flat[key]}"))
    if flat["server.cors_allow_credentials"] and "*" in flat["server.cors_allowed_origins"]:
        out.append(("server.cors_allow_credentials",
                    ("server.cors_allow_credentials", "server.cors_allowed_origins"),
                    "cannot be true while server.cors_allowed_origins contains '*'"))
    if flat["server.max_line_bytes"] > flat["server.max_output_bytes"]:
        out.append(("server.max_line_bytes", ("server.max_line_bytes", "server.max_output_bytes"),
                    f"must not exceed server.max_output_bytes ({flat['server.max_output_bytes']})"
                    f", got {flat['server.max_line_bytes']}"))
    if flat["parallel.max_workers"] > flat["parallel.max_parallel_limit"]:
        out.append(("parallel.max_workers", ("parallel.max_workers", "parallel.max_parallel_limit"),
                    "must not exceed parallel.max_parallel_limit "
                    f"({flat['parallel.max_parallel_limit']}), got {flat['parallel.max_workers']}"))
    if flat["execution.mode"] == "celery" and not flat["execution.broker_url"]:
        out.append(("execution.broker_url", ("execution.broker_url", "execution.mode"),
                    "must be set (redis://host:6379/0) when execution.mode is celery"))
    beat, lost = flat["execution.heartbeat_secs"], flat["execution.lost_after_secs"]
    if lost < 2 * beat:
        out.append(("execution.lost_after_secs",
                    ("execution.lost_after_secs", "execution.heartbeat_secs"),
                    f"must be at least twice execution.heartbeat_secs ({beat}), got {lost}"))
    if flat["store.pool_min_size"] > flat["store.pool_max_size"]:
        out.append(("store.pool_min_size", ("store.pool_min_size", "store.pool_max_size"),
                    f"must not exceed store.pool_max_size ({flat['store.pool_max_size']}), "
                    f"got {flat['store.pool_min_size']}"))
    default = flat["default_backend"]
    enabled_key = f"backends.{default}.enabled"
    if not flat[enabled_key]:
        out.append(("default_backend", ("default_backend", enabled_key),
                    f"{default!r} is disabled ({enabled_key} is false)"))
    return out


def build(flat: dict[str, Any], sources: dict[str, str], problems: list[Problem], *,
           path: Path | None, lines: Mapping[str, int] | None = None) -> Config:
    """Turn a complete, individually validated flat mapping into a Config or raise."""
    lines = lines or {}
    failed = {p.key for p in problems}
    for key, involved, reason in _cross_checks(flat):
        if failed.intersection(involved):
            continue  # one of the inputs is already reported; its stored value is a default
        source = sources.get(key, "default")
        problems.append(Problem(origin_text(source, lines.get(key)), key, reason))
    if problems:
        raise_problems(problems)
    sections = {}
    for section, cls in SECTION_CLASSES.items():
        sections[section] = cls(**{f.name: flat[f"{section}.{f.name}"]
                                   for f in dataclasses.fields(cls)})
    backends = {
        name: BackendConfig(**{f.name: flat[f"backends.{name}.{f.name}"]
                               for f in dataclasses.fields(BackendConfig)})
        for name in KNOWN_BACKENDS
    }
    return Config(default_backend=flat["default_backend"], backends=backends,
                  sources=dict(sources), path=path, **sections)


def defaults() -> tuple[dict[str, Any], dict[str, str]]:
    flat = {key: (dict(s.default) if isinstance(s.default, dict) else s.default)
            for key, s in SPECS.items()}
    return flat, {key: "default" for key in SPECS}
