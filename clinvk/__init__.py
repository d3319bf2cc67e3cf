"""clinvk: run the Claude Code, Codex and Gemini CLIs as a service."""

__version__ = "0.1.0"
