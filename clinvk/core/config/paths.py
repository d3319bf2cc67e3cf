"""Where clinvk keeps its files and which config file is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def clinvk_home(env: Mapping[str, str] | None = None) -> Path:
    """``$CLINVK_HOME`` or ``~/.clinvk``: config, sessions and state live here."""
    env = os.environ if env is None else env
    home = env.get("CLINVK_HOME", "").strip()
    return Path(home).expanduser() if home else Path.home() / ".clinvk"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``<clinvk home>/config.yaml``."""
    return clinvk_home(env) / "config.yaml"


def resolve_config_path(path: str | os.PathLike[str] | None = None,
                        env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The config file to use and whether it was asked for explicitly (then it must exist)."""
    env = os.environ if env is None else env
    if path is not None and str(path) != "":
        return Path(path).expanduser(), True
    from_env = env.get("CLINVK_CONFIG", "").strip()
    if from_env:
        return Path(from_env).expanduser(), True
    return default_config_path(env), False
