"""OpenAI chat requests → a prompt and a system prompt, and our token usage → OpenAI's."""

from __future__ import annotations

from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import TokenUsage
from clinvk.server import compat

NOUN = "content part"


def _content_text(content: Any, where: str, role: str) -> str:
    def read_part(part: dict[str, Any], here: str) -> str:
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            return compat.part_string(part, kind, here)
        if kind in ("image_url", "input_image", "image"):
            raise InvalidRequest(f"{here}: image content parts are not supported (the "
                                 "backends take text prompts only)", field=here)
        raise compat.unsupported_part(here, NOUN, kind)

    return "" if content is None else compat.text_of_parts(content, where, NOUN, read_part)


def conversation(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """``messages`` -> (prompt, system prompt)."""
    system: list[str] = []
    turns: list[compat.Turn] = []
    for i, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{i}]"
        if role in ("tool", "function"):
            raise InvalidRequest(f"{where}: {role} messages are not supported (tools are not "
                                 "supported)", field=f"{where}.role")
        if message.get("tool_calls"):
            raise InvalidRequest(f"{where}.tool_calls is not supported (tools are not "
                                 "supported)", field=f"{where}.tool_calls")
        text = _content_text(message.get("content"), f"{where}.content", role)
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(compat.Turn(role, text, f"{where}.content"))
    return compat.render_prompt(turns), compat.join_system(system)


def check_unsupported(args: dict[str, Any]) -> None:
    """Parameters whose meaning cannot be honoured are refused, naming the parameter."""
    if (args.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 is not supported: each request runs the agent once",
                             field="n")
    for name in ("tools", "functions"):
        if args.get(name):
            raise InvalidRequest(f"{name} is not supported: the agents use their own tools "
                                 "and cannot call yours", field=name)
    for name in ("tool_choice", "function_call"):
        choice = args.get(name)
        if choice not in (None, "none", "auto"):
            raise InvalidRequest(f"{name} {choice!r} is not supported (no tools)", field=name)
    response_format = args.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind != "text":
            raise InvalidRequest(f"response_format {kind or response_format!r} is not "
                                 "supported; only text", field="response_format")


def usage_body(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
