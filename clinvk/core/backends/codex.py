"""Codex CLI (`codex exec`) adapter.

Runs are `codex exec --skip-git-repo-check --json ... -` with the prompt on stdin (`-`),
resumes `codex exec resume --skip-git-repo-check --json ... <thread_id> -`. `exec resume`
accepts neither `-s` nor `-C`, so a sandbox on resume goes through `-c sandbox_mode=...`
and the working directory is the process cwd in both cases.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clinvk.core import events
from clinvk.core.backends.base import (
    Backend,
    Invocation,
    ParsedResult,
    RunOptions,
    StreamParser,
    as_int,
    system_prompt_first,
    tier_aliases,
)
from clinvk.core.events import Event, TokenUsage
from clinvk.core.types import ApprovalMode, SandboxMode

#: Model aliases the gateway resolves before calling codex.
MODEL_ALIASES = tier_aliases(fast="gpt-5.4-mini", balanced="gpt-5.5", best="gpt-5.5-codex")

SANDBOX_VALUES = {
    SandboxMode.READ_ONLY: "read-only",
    SandboxMode.WORKSPACE: "workspace-write",
    SandboxMode.FULL: "danger-full-access",
}
# codex 0.171 exits 1 on approval_policy "untrusted" ("is no longer supported; remove this
# setting"); "on-request" is the strictest policy it still accepts (exec never prompts anyway).
APPROVAL_POLICIES = {
    ApprovalMode.AUTO: "on-request",
    ApprovalMode.NONE: "never",
    ApprovalMode.ALWAYS: "on-request",
}
TRANSIENT_PREFIX = "Reconnecting..."
SESSION_ID_LINE = re.compile(r"^session id:\s*([0-9a-fA-F-]{8,})\s*$", re.MULTILINE)


def toml_string(value: str) -> str:
    """A TOML basic string (JSON string escaping is a valid subset)."""
    return json.dumps(value)


class CodexStreamParser(StreamParser):
    def __init__(self, model: str | None = None, workdir: str | None = None) -> None:
        super().__init__()
        self.result.model = model
        self._workdir = workdir
        self._last_error: str | None = None

    def feed_json(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind in ("thread.started", "session.created"):
            thread_id = obj.get("thread_id") or obj.get("session_id")
            self.result.backend_session_id = thread_id
            return [events.init(thread_id, self.result.model, self._workdir)]
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(kind, obj.get("item") or {})
        if kind == "turn.completed":
            usage = obj.get("usage") or {}
            self.result.usage = self.result.usage.add(
                TokenUsage(
                    # Codex's input_tokens already include the cached ones.
                    input_tokens=as_int(usage.get("input_tokens")),
                    output_tokens=as_int(usage.get("output_tokens")),
                    cached_tokens=as_int(usage.get("cached_input_tokens")),
                    reasoning_tokens=as_int(usage.get("reasoning_output_tokens")),
                )
            )
            self.completed = True
            return []
        if kind == "error":
            message = str(obj.get("message") or "")
            if not message.startswith(TRANSIENT_PREFIX):
                self._last_error = message
            return []
        if kind == "turn.failed":
            error = obj.get("error") or {}
            self.result.error = str(error.get("message") or self._last_error or "turn failed")
            self.result.is_error = True
            self.completed = True
            return []
        return []

    def _item(self, kind: str, item: dict[str, Any]) -> list[Event]:
        itype = item.get("type")
        item_id = str(item.get("id") or "")
        done = kind == "item.completed"
        if itype == "agent_message" and done:
            text = item.get("text") or ""
            if self.streamed_text:
                text = "\n\n" + text
            self.add_text(text)
            # Codex prints whole messages, never deltas.
            return [events.message(text, partial=False)] if text else []
        if itype == "reasoning" and done and item.get("text"):
            return [events.thinking(item["text"])]
        if itype == "command_execution":
            if kind == "item.started":
                return [
                    events.tool_use(item_id, "command_execution", {"command": item.get("command")})
                ]
            if done:
                failed = item.get("status") == "failed" or as_int(item.get("exit_code")) != 0
                return [
                    events.tool_result(item_id, item.get("aggregated_output", ""), is_error=failed)
                ]
        if itype == "file_change" and done:
            changes = item.get("changes")
            return [
                events.tool_use(item_id, "file_change", {"changes": changes}),
                events.tool_result(item_id, changes, is_error=item.get("status") == "failed"),
            ]
        if itype in ("mcp_tool_call", "web_search") and kind == "item.started":
            return [
                events.tool_use(
                    item_id,
                    str(itype),
                    {k: v for k, v in item.items() if k not in ("id", "type", "status")},
                )
            ]
        if itype in ("mcp_tool_call", "web_search") and done:
            return [
                events.tool_result(
                    item_id,
                    item.get("result") or item.get("query"),
                    is_error=item.get("status") == "failed",
                )
            ]
        if itype == "error" and done:
            self._last_error = str(item.get("message") or "")
        return []

    def finish(
        self, exit_code: int | None, stderr_tail: str = "", *, expect_json: bool = False
    ) -> ParsedResult:
        if exit_code not in (0, None) and not self.result.error and self._last_error:
            self.result.error = self._last_error
        if not self.result.backend_session_id:
            match = SESSION_ID_LINE.search(stderr_tail)
            if match:
                self.result.backend_session_id = match.group(1)
        return super().finish(exit_code, stderr_tail, expect_json=expect_json)


class CodexBackend(Backend):
    name = "codex"
    display_name = "Codex CLI"
    vendor = "openai"
    builtin_aliases = MODEL_ALIASES
    extra_flag_allowlist = {
        "-c": True,
        "--config": True,
        "--enable": True,
        "--disable": True,
        "--add-dir": True,
        "--output-schema": True,
        "--ignore-user-config": False,
        "--ignore-rules": False,
        "--dangerously-bypass-approvals-and-sandbox": False,
    }
    dangerous_flags = frozenset(
        {"--dangerously-bypass-approvals-and-sandbox", "-c", "--config", "--add-dir"}
    )

    def build_invocation(self, opts: RunOptions) -> Invocation:
        argv = [self.command, "exec"]
        if opts.resume_id:
            argv.append("resume")
        argv += ["--skip-git-repo-check", "--json"]
        argv += self.model_args(opts)
        sandbox = SANDBOX_VALUES.get(opts.sandbox_mode)
        if sandbox and opts.resume_id:
            argv += ["-c", f"sandbox_mode={toml_string(sandbox)}"]
        elif sandbox:
            argv += ["-s", sandbox]
        policy = APPROVAL_POLICIES.get(opts.approval_mode)
        if policy:
            argv += ["-c", f"approval_policy={toml_string(policy)}"]
        if opts.ephemeral:
            argv.append("--ephemeral")
        argv += opts.extra_flags
        if opts.resume_id:
            argv.append(opts.resume_id)
        argv.append("-")
        return Invocation(argv=argv, stdin=system_prompt_first(opts))

    def new_stream_parser(
        self, *, model: str | None = None, workdir: str | None = None
    ) -> CodexStreamParser:
        return CodexStreamParser(model, workdir)
