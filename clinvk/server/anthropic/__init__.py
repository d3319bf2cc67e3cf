"""The Anthropic-compatible API (/anthropic/v1)."""
