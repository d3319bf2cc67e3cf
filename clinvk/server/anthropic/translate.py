"""Anthropic message requests → a prompt and a system prompt; our results → Anthropic's."""

from __future__ import annotations

from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import TokenUsage
from clinvk.server import compat

NOUN = "content block"


def _blocks_text(content: Any, where: str, role: str) -> str:
    def read_block(block: dict[str, Any], here: str) -> str | None:
        kind = block.get("type")
        if kind == "text":
            return compat.part_string(block, "text", here)
        if kind in ("thinking", "redacted_thinking") and role == "assistant":
            return None  # earlier reasoning echoed back by the client: not part of the answer
        if kind in ("image", "document", "search_result", "container_upload"):
            raise InvalidRequest(f"{here}: {kind} blocks are not supported (the backends take "
                                 "text prompts only)", field=here)
        if isinstance(kind, str) and ("tool" in kind):
            raise InvalidRequest(f"{here}: {kind} blocks are not supported (tools are not "
                                 "supported)", field=here)
        raise compat.unsupported_part(here, NOUN, kind)

    return compat.text_of_parts(content, where, NOUN, read_block)


def conversation(args: dict[str, Any]) -> tuple[str, str | None]:
    """The request -> (prompt, system prompt)."""
    system = args.get("system")
    system_text = None
    if system is not None:
        if isinstance(system, list) and any(
                isinstance(b, dict) and b.get("type") != "text" for b in system):
            raise InvalidRequest("system must be a string or an array of text blocks",
                                 field="system")
        system_text = compat.join_system([_blocks_text(system, "system", "system")])
    turns = [compat.Turn(m["role"], _blocks_text(m["content"], f"messages[{i}].content",
                                                 m["role"]), f"messages[{i}].content")
             for i, m in enumerate(args["messages"])]
    return compat.render_prompt(turns), system_text


def check_unsupported(args: dict[str, Any]) -> None:
    if args.get("tools"):
        raise InvalidRequest("tools: not supported; the agents use their own tools and "
                             "cannot call yours", field="tools")
    choice = (args.get("tool_choice") or {}).get("type")
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(f"tool_choice: {choice!r} is not supported (no tools)",
                             field="tool_choice")


def usage_body(usage: TokenUsage) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens``; ours include them."""
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def message_object(message_id: str, model: str, text: str | None, usage: TokenUsage,
                   *, final: bool) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text is not None else [],
        "stop_reason": "end_turn" if final else None,
        "stop_sequence": None,
        "usage": usage_body(usage),
    }
