"""The OpenAI-compatible API (/openai/v1)."""
