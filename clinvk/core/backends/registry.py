"""Backend registry: the three adapters, configured from the config tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinvk.core.backends.base import Backend
from clinvk.core.backends.claude import ClaudeBackend
from clinvk.core.backends.codex import CodexBackend
from clinvk.core.backends.gemini import GeminiBackend
from clinvk.core.errors import UnknownBackend

if TYPE_CHECKING:
    from clinvk.core.config import Config

BACKEND_CLASSES: dict[str, type[Backend]] = {
    "claude": ClaudeBackend,
    "codex": CodexBackend,
    "gemini": GeminiBackend,
}
BACKEND_NAMES = tuple(BACKEND_CLASSES)


class Registry:
    """Name → configured adapter, in a stable order (claude, codex, gemini)."""

    def __init__(self, backends: dict[str, Backend]) -> None:
        self._backends = backends

    @classmethod
    def from_config(cls, config: Config) -> Registry:
        backends: dict[str, Backend] = {}
        for name, klass in BACKEND_CLASSES.items():
            bcfg = config.backends.get(name)
            if bcfg is None:
                backends[name] = klass()
                continue
            if not bcfg.enabled:
                continue
            backends[name] = klass(
                command=bcfg.command or name,
                env=dict(bcfg.env),
                aliases=dict(bcfg.aliases),
                default_model=bcfg.model or None,
            )
        return cls(backends)

    def get(self, name: str | None, *, field: str = "backend") -> Backend:
        key = (name or "").strip().lower()
        if key in self._backends:
            return self._backends[key]
        known = ", ".join(self._backends)
        if not key:
            raise UnknownBackend(f"{field} is required (one of: {known})", field=field)
        raise UnknownBackend(f"unknown backend {name!r} (known: {known})", field=field)

    def names(self) -> list[str]:
        return list(self._backends)

    def __iter__(self):
        return iter(self._backends.values())

    def __contains__(self, name: object) -> bool:
        return name in self._backends
