"""Stub model APIs (Anthropic Messages, OpenAI Responses, Gemini) for the real-CLI suite."""

from stubs.anthropic import AnthropicStub
from stubs.base import TOOL_COMMAND, Recorded, StubServer, decide
from stubs.gemini import GeminiStub
from stubs.openai_responses import OpenAIResponsesStub

STUBS: dict[str, type[StubServer]] = {
    "claude": AnthropicStub,
    "codex": OpenAIResponsesStub,
    "gemini": GeminiStub,
}

__all__ = [
    "STUBS",
    "TOOL_COMMAND",
    "AnthropicStub",
    "GeminiStub",
    "OpenAIResponsesStub",
    "Recorded",
    "StubServer",
    "decide",
]
