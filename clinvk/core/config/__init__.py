"""Configuration: defaults < config file < environment < flags, validated strictly.

Every value is type-checked and range-checked, every problem is reported with its origin
(file and line, environment variable, flag) and the dotted key, and each value remembers
where it came from so ``clinvk config show`` can explain it. The Go tool silently fell back
to defaults on a broken file; this one never does.

The package knows nothing about HTTP or click: the server and the CLI read the frozen
:class:`Config` tree and translate :class:`clinvk.core.errors.ConfigError` themselves.

Where things live: ``schema`` (what can be set), ``checks`` (value checks), ``specs`` (the
flat key table and environment names), ``coerce`` (text and YAML to typed values),
``model`` (the :class:`Config` and the rules across keys), ``yamlfile`` and ``loader``
(reading), ``writer`` (``config set``), ``paths`` (where files live).
"""

from __future__ import annotations

from clinvk.core.config.loader import load_config
from clinvk.core.config.model import Config
from clinvk.core.config.paths import clinvk_home, default_config_path, resolve_config_path
from clinvk.core.config.schema import (
    APPROVAL_MODES,
    BUILTIN_ALIASES,
    KNOWN_BACKENDS,
    LOG_FORMATS,
    LOG_LEVELS,
    OUTPUT_FORMATS,
    SANDBOX_MODES,
    BackendConfig,
    OutputConfig,
    ParallelConfig,
    ServerConfig,
    SessionConfig,
    UnifiedFlagsConfig,
)
from clinvk.core.config.specs import env_var_for, is_secret_name, key_reference
from clinvk.core.config.writer import set_config_value

__all__ = [
    "APPROVAL_MODES",
    "BUILTIN_ALIASES",
    "KNOWN_BACKENDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OUTPUT_FORMATS",
    "SANDBOX_MODES",
    "BackendConfig",
    "Config",
    "OutputConfig",
    "ParallelConfig",
    "ServerConfig",
    "SessionConfig",
    "UnifiedFlagsConfig",
    "clinvk_home",
    "default_config_path",
    "env_var_for",
    "is_secret_name",
    "key_reference",
    "load_config",
    "resolve_config_path",
    "set_config_value",
]
