"""An isolated world for one real-CLI conversation: temp HOME, config files, env, clinvk config.

Everything a CLI could write (sessions, caches, error dumps, config) lands under one temp
directory; nothing points outside loopback. How each CLI is pointed at a local API:

* claude: ``ANTHROPIC_BASE_URL`` + ``ANTHROPIC_API_KEY``, with non-essential traffic,
  auto-updates, telemetry and error reporting off and one retry (``CLAUDE_CODE_MAX_RETRIES``).
  ``IS_SANDBOX=1`` lets ``--permission-mode bypassPermissions`` run as root (CI containers).
* codex: a custom model provider in ``$CODEX_HOME/config.toml`` (``OPENAI_BASE_URL`` is
  ignored by 0.171) with the Responses wire API, one request/stream retry, analytics and
  plugins off and no update check.
* gemini: ``security.auth.selectedType: gemini-api-key`` in ``~/.gemini/settings.json`` (env
  alone trips the "gateway" auth bug, exit 41), usage statistics off, one attempt (no 5 s
  wait before a retry of a 5xx);
  ``GOOGLE_GEMINI_BASE_URL`` + ``GEMINI_API_KEY``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Inherited variables that could point a CLI elsewhere or change how it authenticates.
SCRUB_PREFIXES = ("ANTHROPIC_", "CLAUDE", "OPENAI_", "CODEX_", "GEMINI_", "GOOGLE_",
                  "VERTEX", "XDG_", "NODE_OPTIONS", "NPM_CONFIG_", "npm_config_",
                  "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                  "all_proxy", "DISABLE_", "IS_SANDBOX")

CODEX_MODEL = "gpt-5.5"
CODEX_KEY_ENV = "STUB_OPENAI_KEY"


@dataclass
class Sandbox:
    """Directories and environment for one backend's conversation."""

    backend: str
    root: Path
    stub_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def codex_home(self) -> Path:
        return self.root / "codex-home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def session_files(self) -> list[Path]:
        """Every conversation file the CLI keeps for this sandbox."""
        if self.backend == "claude":
            base, pattern = self.home / ".claude" / "projects", "*/*.jsonl"
        elif self.backend == "codex":
            base, pattern = self.codex_home / "sessions", "**/rollout-*.jsonl"
        else:
            base, pattern = self.home / ".gemini" / "tmp", "*/chats/session-*"
        return sorted(base.glob(pattern)) if base.exists() else []


def make_sandbox(backend: str, root: Path, stub_url: str, *,
                 workdir: Path | None = None) -> Sandbox:
    """Create the directories and config files of a sandbox (``workdir`` may be shared)."""
    box = Sandbox(backend, root, stub_url, workdir or root / "work")
    for path in (box.home, box.tmp, box.workdir):
        path.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(box.home),
        "TMPDIR": str(box.tmp),
        "XDG_CONFIG_HOME": str(box.home / ".config"),
        "XDG_CACHE_HOME": str(box.home / ".cache"),
        "XDG_DATA_HOME": str(box.home / ".local" / "share"),
        "XDG_STATE_HOME": str(box.home / ".local" / "state"),
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    if backend == "claude":
        env.update({
            "ANTHROPIC_BASE_URL": stub_url,
            "ANTHROPIC_API_KEY": "sk-ant-stub-000",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "IS_SANDBOX": "1",
        })
    elif backend == "codex":
        box.codex_home.mkdir(parents=True, exist_ok=True)
        (box.codex_home / "config.toml").write_text(codex_config(stub_url))
        env.update({"CODEX_HOME": str(box.codex_home), CODEX_KEY_ENV: "sk-stub-000"})
    elif backend == "gemini":
        settings = box.home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(gemini_settings(), indent=2))
        env.update({"GOOGLE_GEMINI_BASE_URL": stub_url, "GEMINI_API_KEY": "stub-gemini-key"})
    else:
        raise ValueError(f"unknown backend {backend!r}")
    box.env = env
    return box


def codex_config(stub_url: str) -> str:
    return "\n".join([
        f'model = "{CODEX_MODEL}"',
        'model_provider = "stub"',
        "check_for_update_on_startup = false",
        "",
        "[model_providers.stub]",
        'name = "Stub"',
        f'base_url = "{stub_url}/v1"',
        f'env_key = "{CODEX_KEY_ENV}"',
        'wire_api = "responses"',
        "request_max_retries = 1",
        "stream_max_retries = 1",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[features]",
        "plugins = false",
        "",
    ])


def gemini_settings() -> dict[str, Any]:
    return {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False,
                    "maxAttempts": 1},
    }


def clean_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` without anything that could redirect or authenticate a CLI."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not k.startswith(SCRUB_PREFIXES)}


def write_clinvk_config(path: Path, boxes: dict[str, Sandbox], binaries: dict[str, Path],
                        *, models: dict[str, str] | None = None,
                        server: dict[str, Any] | None = None,
                        timeout_secs: int = 90) -> Path:
    """A clinvk config that runs each backend from ``binaries`` inside its sandbox."""
    backends: dict[str, Any] = {}
    for name, box in boxes.items():
        entry: dict[str, Any] = {"command": str(binaries[name]), "env": dict(box.env),
                                 "timeout_secs": timeout_secs}
        if models and models.get(name):
            entry["model"] = models[name]
        backends[name] = entry
    data: dict[str, Any] = {"backends": backends}
    if server:
        data["server"] = server
    # Atomic: a reader (another thread's engine) never sees a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path
