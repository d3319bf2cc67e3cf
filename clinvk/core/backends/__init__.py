"""Backend adapters for the claude, codex and gemini CLIs."""

from clinvk.core.backends.base import Backend, Invocation, ParsedResult, RunOptions, StreamParser
from clinvk.core.backends.registry import BACKEND_NAMES, Registry

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "Invocation",
    "ParsedResult",
    "Registry",
    "RunOptions",
    "StreamParser",
]
