"""Gemini CLI (`gemini`) adapter.

Runs are `gemini --output-format stream-json --skip-trust ...` with the prompt on stdin
(a piped stdin without `-p` runs headless). The stream echoes the user's prompt as
`role: user` messages; those never become assistant text.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from clinvk.core import events
from clinvk.core.backends.base import (
    Backend,
    Invocation,
    ParsedResult,
    RunEnv,
    RunOptions,
    StreamParser,
    as_int,
    plan_or_approval,
    system_prompt_first,
    tier_aliases,
)
from clinvk.core.events import Event, TokenUsage
from clinvk.core.types import ApprovalMode, SandboxMode

#: Model aliases the gateway resolves before calling gemini.
MODEL_ALIASES = tier_aliases(fast="gemini-2.5-flash", balanced="gemini-2.5-pro",
                             best="gemini-3.1-pro-preview")

# --approval-mode values; its plan mode is gemini's read-only mode.
APPROVAL_MODES = {
    ApprovalMode.AUTO: "auto_edit",
    ApprovalMode.NONE: "yolo",
    ApprovalMode.ALWAYS: "default",
}


def gemini_stream_usage(stats: dict[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=as_int(stats.get("input_tokens")),
        output_tokens=as_int(stats.get("output_tokens")),
        cached_tokens=as_int(stats.get("cached")),
    )


def main_model(models: dict[str, Any]) -> str | None:
    """The model that answered: the one in the `main` role, else the last one listed."""
    for name, data in models.items():
        if isinstance(data, dict) and "main" in (data.get("roles") or {}):
            return name
    return next(reversed(models), None) if models else None


def api_error_message(raw: Any) -> str:
    """Unwrap Gemini's `[API Error: {"error": {...}}]` strings into the server's message."""
    text = str(raw or "")
    inner = text
    if inner.startswith("[API Error:") and inner.endswith("]"):
        inner = inner[len("[API Error:") : -1].strip()
    try:
        payload = json.loads(inner)
    except ValueError:
        return text
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        code = err.get("code")
        message = err.get("message") or text
        return f"{message} (API status {code})" if code else str(message)
    return text


class GeminiStreamParser(StreamParser):
    def __init__(self, workdir: str | None = None) -> None:
        super().__init__()
        self._workdir = workdir

    def feed_json(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "init":
            self.result.backend_session_id = obj.get("session_id")
            model = obj.get("model")
            if model and model != "auto":
                self.result.model = model
            return [events.init(obj.get("session_id"), model, self._workdir)]
        if kind == "message":
            if obj.get("role") != "assistant":
                return []  # the CLI echoes the user's prompt; never assistant text
            text = obj.get("content") or ""
            if not text:
                return []
            self.add_text(text)
            return [events.message(text, partial=bool(obj.get("delta")))]
        if kind == "tool_use":
            return [
                events.tool_use(
                    obj.get("tool_id", ""), obj.get("tool_name", ""), obj.get("parameters")
                )
            ]
        if kind == "tool_result":
            output = obj.get("output")
            if output is None and isinstance(obj.get("error"), dict):
                output = obj["error"].get("message")
            return [
                events.tool_result(
                    obj.get("tool_id", ""), output, is_error=obj.get("status") != "success"
                )
            ]
        if kind == "error":
            # Non-fatal warnings (e.g. loop detection) arrive as `error` events with a severity.
            if obj.get("severity") == "error":
                self.result.error = str(obj.get("message") or "gemini error")
            return []
        if kind == "result":
            stats = obj.get("stats") or {}
            self.result.usage = gemini_stream_usage(stats)
            models = stats.get("models")
            if isinstance(models, dict) and models:
                # Pick the model that produced output tokens last (the router comes first).
                answering = [
                    n
                    for n, m in models.items()
                    if isinstance(m, dict) and as_int(m.get("output_tokens"))
                ]
                self.result.model = (answering or list(models))[-1]
            if obj.get("status") == "error":
                error = obj.get("error") or {}
                self.result.error = api_error_message(error.get("message") or "gemini error")
                self.result.is_error = True
            self.completed = True
            return []
        return []


class GeminiBackend(Backend):
    name = "gemini"
    display_name = "Gemini CLI"
    vendor = "google"
    builtin_aliases = MODEL_ALIASES
    extra_flag_allowlist = {
        "--include-directories": True,
        "--policy": True,
        "--allowed-mcp-server-names": True,
        "-e": True,
        "--extensions": True,
        "--raw-output": False,
        "--accept-raw-output-risk": False,
        "--yolo": False,
        "-y": False,
        "--approval-mode": True,
        "--sandbox": False,
        "-s": False,
        "--debug": False,
        "-d": False,
    }
    dangerous_flags = frozenset({"--yolo", "-y", "--approval-mode", "--include-directories"})

    def build_invocation(self, opts: RunOptions) -> Invocation:
        argv = [self.command, "--output-format", "stream-json", "--skip-trust"]
        argv += self.model_args(opts)
        argv += plan_or_approval(opts, "--approval-mode", APPROVAL_MODES)
        if opts.sandbox_mode == SandboxMode.WORKSPACE:
            argv.append("--sandbox")  # container sandbox: needs docker or podman
        if opts.verbose:
            argv.append("--debug")
        argv += opts.extra_flags
        if opts.resume_id:
            argv += ["--resume", opts.resume_id]
        return Invocation(argv=argv, stdin=system_prompt_first(opts))

    def new_stream_parser(
        self, *, model: str | None = None, workdir: str | None = None
    ) -> GeminiStreamParser:
        return GeminiStreamParser(workdir)

    def parse_output(
        self, stdout: str, stderr: str = "", exit_code: int | None = 0
    ) -> ParsedResult:
        """json mode prints one pretty object on stdout, or its error object on stderr."""
        text = stdout.strip()
        if text.startswith("{") and "\n" in text:
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "response" in obj:
                return self._from_json_object(obj, exit_code, stderr)
        if not text and "{" in stderr:
            obj = trailing_json_object(stderr)
            if obj is not None:
                return self._from_json_object(obj, exit_code, stderr)
        return super().parse_output(stdout, stderr, exit_code)

    def _from_json_object(
        self, obj: dict[str, Any], exit_code: int | None, stderr: str
    ) -> ParsedResult:
        result = ParsedResult(
            output=str(obj.get("response") or ""), backend_session_id=obj.get("session_id")
        )
        models = (obj.get("stats") or {}).get("models") or {}
        usage = TokenUsage()
        for data in models.values():
            tokens = (data or {}).get("tokens") or {}
            usage = usage.add(
                TokenUsage(
                    input_tokens=as_int(tokens.get("prompt") or tokens.get("input")),
                    output_tokens=as_int(tokens.get("candidates")),
                    cached_tokens=as_int(tokens.get("cached")),
                    reasoning_tokens=as_int(tokens.get("thoughts")),
                )
            )
        result.usage = usage
        result.model = main_model(models)
        error = obj.get("error")
        if isinstance(error, dict):
            result.error = api_error_message(error.get("message"))
            result.is_error = True
        elif exit_code not in (0, None):
            result.error = f"backend exited with code {exit_code}"
            result.is_error = True
        return result

    def cleanup_ephemeral(
        self, backend_session_id: str | None, workdir: str, env: RunEnv
    ) -> None:
        """Gemini has no ephemeral flag: delete the chat file the run wrote."""
        if not backend_session_id:
            return
        home = env.get("HOME") or os.path.expanduser("~")
        pattern = os.path.join(
            home, ".gemini", "tmp", "*", "chats", f"session-*-{backend_session_id[:8]}*.json*"
        )
        for path in glob.glob(pattern):
            try:
                os.remove(path)
            except OSError:
                pass


def trailing_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object printed last in ``text`` (after any stack traces)."""
    start = text.rfind("\n{")
    candidate = text[start + 1 :] if start >= 0 else text[text.find("{") :]
    try:
        obj = json.loads(candidate)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
