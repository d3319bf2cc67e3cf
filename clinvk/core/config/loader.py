"""Loading: defaults < config file < environment, every problem reported at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinvk.core.config.coerce import Invalid, coerce, merge_aliases
from clinvk.core.config.model import Config, apply_override, build, defaults
from clinvk.core.config.paths import resolve_config_path
from clinvk.core.config.problems import Problem, origin_text
from clinvk.core.config.specs import (
    ENV_TO_KEY,
    LEGACY_ENV,
    MAP_ENV_VARS,
    RESERVED_ENV_PREFIXES,
    SPECS,
    env_var_for,
    suggest,
)
from clinvk.core.config.yamlfile import compose, read_text, walk_file
from clinvk.core.errors import ConfigError


def load_file_into(flat: dict[str, Any], sources: dict[str, str], problems: list[Problem],
                    text: str, path: Path) -> dict[str, int]:
    node, data = compose(text, path)
    values, lines, found = walk_file(node, data, path)
    source = f"file:{path}"
    for key, value in values.items():
        spec = SPECS[key]
        try:
            new = coerce(spec, value)
        except Invalid as exc:
            found.append(Problem(origin_text(source, lines[key]), key, str(exc), lines[key]))
            continue
        if spec.kind == "map":
            new = merge_aliases(key, new)
        flat[key] = new
        sources[key] = source
    problems.extend(sorted(found, key=lambda p: p.line))
    return lines


def _load_env_into(flat: dict[str, Any], sources: dict[str, str], problems: list[Problem],
                   env: Mapping[str, str]) -> None:
    # Legacy names first so the canonical CLINVK_<SECTION>_<KEY> name wins when both are set.
    for var, key in LEGACY_ENV.items():
        if var in env and env_var_for(key) not in env:
            apply_override(flat, sources, problems, key, env[var], f"env:{var}",
                   origin_text(f"env:{var}"), from_text=True)
    for var in sorted(env):
        if var in ENV_TO_KEY:
            apply_override(flat, sources, problems, ENV_TO_KEY[var], env[var], f"env:{var}",
                   origin_text(f"env:{var}"), from_text=True)
        elif var in MAP_ENV_VARS:
            problems.append(Problem(origin_text(f"env:{var}"), MAP_ENV_VARS[var],
                                     "mappings cannot be set from the environment; "
                                     "use the config file or `clinvk config set`"))
        elif var.startswith(RESERVED_ENV_PREFIXES):
            hint = suggest(var, ENV_TO_KEY)
            problems.append(Problem(origin_text(f"env:{var}"), "",
                                     "unknown configuration variable" + hint))


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration: defaults < file < environment.

    The file is ``path`` > ``$CLINVK_CONFIG`` > ``<clinvk home>/config.yaml``; only the last
    may be missing. Every problem found (file and environment) is reported in one
    :class:`ConfigError`; nothing falls back to a default silently.
    """
    env = os.environ if env is None else env
    file_path, explicit = resolve_config_path(path, env)
    flat, sources = defaults()
    problems: list[Problem] = []
    lines: dict[str, int] = {}
    read_path: Path | None = None
    if file_path.exists() or explicit:
        if not file_path.exists():
            via = "" if path else " (from CLINVK_CONFIG)"
            raise ConfigError(f"invalid configuration: {file_path}{via}: file not found",
                              details=[{"origin": str(file_path), "key": "",
                                        "reason": "file not found"}])
        lines = load_file_into(flat, sources, problems, read_text(file_path), file_path)
        read_path = file_path
    _load_env_into(flat, sources, problems, env)
    return build(flat, sources, problems, path=read_path, lines=lines)
