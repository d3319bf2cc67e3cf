"""Claude Code (`claude`) adapter.

Runs are always `claude -p --output-format stream-json --verbose --include-partial-messages`
with the prompt on stdin: stream-json needs --verbose, partial messages give token-level
deltas, and a prompt on stdin can never be read as an option (nor swallowed by the
variadic --allowedTools/--add-dir).
"""

from __future__ import annotations

import json
from typing import Any

from clinvk.core import events
from clinvk.core.backends.base import (
    Backend,
    Invocation,
    ParsedResult,
    RunOptions,
    StreamParser,
    as_int,
    plan_or_approval,
    tier_aliases,
)
from clinvk.core.events import Event, TokenUsage
from clinvk.core.types import ApprovalMode

#: Model aliases the gateway resolves before calling claude; claude takes its own tier
#: names (always the latest model of the tier).
MODEL_ALIASES = tier_aliases(fast="haiku", balanced="sonnet", best="opus")

# --permission-mode values; claude has no sandbox flag, so read-only is its plan mode.
PERMISSION_MODES = {
    ApprovalMode.AUTO: "acceptEdits",
    ApprovalMode.NONE: "bypassPermissions",
    ApprovalMode.ALWAYS: "default",
}


def claude_usage(usage: dict[str, Any] | None, cost: Any = None) -> TokenUsage:
    """Claude reports uncached input separately from cache reads and writes; sum them."""
    usage = usage or {}
    cache_read = as_int(usage.get("cache_read_input_tokens"))
    cache_write = as_int(usage.get("cache_creation_input_tokens"))
    return TokenUsage(
        input_tokens=as_int(usage.get("input_tokens")) + cache_read + cache_write,
        output_tokens=as_int(usage.get("output_tokens")),
        cached_tokens=cache_read,
        reasoning_tokens=0,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )


def apply_result_object(result: ParsedResult, obj: dict[str, Any]) -> None:
    """Fold a `{"type":"result"}` object (json mode, or the last stream line) into ``result``."""
    result.backend_session_id = obj.get("session_id") or result.backend_session_id
    result.usage = claude_usage(obj.get("usage"), obj.get("total_cost_usd"))
    model_usage = obj.get("modelUsage")
    if isinstance(model_usage, dict) and model_usage:
        result.model = next(iter(model_usage)).split("[", 1)[0]
    text = obj.get("result")
    subtype = obj.get("subtype") or ""
    if obj.get("is_error") or subtype.startswith("error"):
        result.is_error = True
        errors = obj.get("errors")
        if isinstance(errors, list) and errors:
            result.error = "; ".join(str(e) for e in errors)
        elif isinstance(text, str) and text:
            result.error = text
        else:
            result.error = f"claude reported {subtype or 'an error'}"
        status = obj.get("api_error_status")
        if status:
            result.error = f"{result.error} (API status {status})"
    elif isinstance(text, str):
        result.output = text


class ClaudeStreamParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self._saw_deltas = False
        self._tool_inputs: dict[int, dict[str, Any]] = {}

    def feed_json(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        session_id = obj.get("session_id")
        if session_id:
            self.result.backend_session_id = session_id
        if kind == "system" and obj.get("subtype") == "init":
            model = obj.get("model")
            if isinstance(model, str):
                self.result.model = model.split("[", 1)[0]
            return [events.init(session_id, self.result.model, obj.get("cwd"))]
        if kind == "stream_event":
            return self._stream_event(obj.get("event") or {})
        if kind == "assistant":
            return self._assistant(obj.get("message") or {}, obj.get("error"))
        if kind == "user":
            return self._user(obj.get("message") or {})
        if kind == "result":
            apply_result_object(self.result, obj)
            if isinstance(obj.get("result"), str) and not self.result.is_error:
                self.final_text = obj["result"]
            self.completed = True
            return []
        return []

    def _stream_event(self, event: dict[str, Any]) -> list[Event]:
        if event.get("type") != "content_block_delta":
            return []
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            self._saw_deltas = True
            self.add_text(delta["text"])
            return [events.message(delta["text"], partial=True)]
        if delta.get("type") == "thinking_delta" and delta.get("thinking"):
            self._saw_deltas = True
            return [events.thinking(delta["thinking"])]
        return []

    def _assistant(self, message: dict[str, Any], error: Any) -> list[Event]:
        out: list[Event] = []
        for block in message.get("content") or []:
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                if error:
                    continue  # synthetic error text; the result line carries it
                if not self._saw_deltas:
                    self.add_text(block["text"])
                    out.append(events.message(block["text"], partial=False))
            elif btype == "thinking" and block.get("thinking") and not self._saw_deltas:
                out.append(events.thinking(block["thinking"]))
            elif btype == "tool_use":
                out.append(
                    events.tool_use(block.get("id", ""), block.get("name", ""), block.get("input"))
                )
        return out

    def _user(self, message: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        content = message.get("content")
        if not isinstance(content, list):
            return out
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                output = block.get("content")
                if isinstance(output, list):
                    output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
                out.append(
                    events.tool_result(
                        block.get("tool_use_id", ""), output, is_error=bool(block.get("is_error"))
                    )
                )
        return out


class ClaudeBackend(Backend):
    name = "claude"
    display_name = "Claude Code"
    vendor = "anthropic"
    builtin_aliases = MODEL_ALIASES
    model_flag = "--model"
    extra_flag_allowlist = {
        "--allowedTools": True,
        "--allowed-tools": True,
        "--disallowedTools": True,
        "--disallowed-tools": True,
        "--append-system-prompt": True,
        "--fallback-model": True,
        "--max-budget-usd": True,
        "--effort": True,
        "--bare": False,
        "--permission-mode": True,
        "--dangerously-skip-permissions": False,
        "--include-hook-events": False,
    }
    dangerous_flags = frozenset({"--dangerously-skip-permissions", "--permission-mode"})

    def build_invocation(self, opts: RunOptions) -> Invocation:
        argv = [
            self.command,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
        ]
        argv += self.model_args(opts)
        argv += plan_or_approval(opts, "--permission-mode", PERMISSION_MODES)
        if opts.max_turns:
            argv += ["--max-turns", str(opts.max_turns)]
        if opts.system_prompt:
            argv += ["--append-system-prompt", opts.system_prompt]
        if opts.ephemeral:
            argv.append("--no-session-persistence")
        argv += opts.extra_flags
        if opts.resume_id:
            argv += ["--resume", opts.resume_id]
        return Invocation(argv=argv, stdin=opts.prompt)

    def new_stream_parser(
        self, *, model: str | None = None, workdir: str | None = None
    ) -> ClaudeStreamParser:
        return ClaudeStreamParser()

    def parse_output(
        self, stdout: str, stderr: str = "", exit_code: int | None = 0
    ) -> ParsedResult:
        text = stdout.strip()
        if text.startswith("{") and "\n" not in text:
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("type") == "result":
                parser = self.new_stream_parser()
                parser.feed_json(obj)
                return parser.finish(exit_code, stderr)
        return super().parse_output(stdout, stderr, exit_code)
