"""The backend adapter interface.

An adapter knows one CLI: which argv starts or resumes a run, and how to read what the
CLI prints. It never starts processes itself (that is the runner's job) and never
touches sessions (the engine's job), so it can be tested as pure functions of text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clinvk.core.events import Event, TokenUsage
from clinvk.core.types import ApprovalMode, SandboxMode, values

APPROVAL_MODES = values(ApprovalMode)
SANDBOX_MODES = values(SandboxMode)

#: How long ``/health`` keeps reporting a backend missing before it looks again.
REPORT_MISS_TTL_SECS = 1.0

# The gateway's model aliases and the tier each names; every backend maps the three tiers to
# models of its own (`backends.<name>.aliases` in the config is merged on top).
ALIAS_TIERS = {
    "fast": "fast",
    "quick": "fast",
    "balanced": "balanced",
    "default": "balanced",
    "best": "best",
    "powerful": "best",
}


def tier_aliases(*, fast: str, balanced: str, best: str) -> dict[str, str]:
    """Every alias of :data:`ALIAS_TIERS`, mapped to the backend's model for its tier."""
    models = {"fast": fast, "balanced": balanced, "best": best}
    return {alias: models[tier] for alias, tier in ALIAS_TIERS.items()}


def inherited_env() -> dict[str, str]:
    """A fresh copy of ``os.environ`` without clinvk's own variables (they may hold secrets)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}


# The environment a backend's CLIs inherit: the gateway's as it was when the backend was
# built (for a server, when its worker started), minus clinvk's own variables, plus the
# backend's configured ``env``. Built once per backend rather than decoded from
# ``os.environ`` on every run (docs/backends.md, "Environment"); read-only,
# so no run can change what the next one gets.
RunEnv = Mapping[str, str]


@dataclass
class RunOptions:
    """Everything a backend needs to build one invocation (already validated)."""

    prompt: str
    workdir: str
    model: str | None = None
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    max_turns: int | None = None
    system_prompt: str | None = None
    verbose: bool = False
    ephemeral: bool = False
    extra_flags: list[str] = field(default_factory=list)
    resume_id: str | None = None


@dataclass
class Invocation:
    argv: list[str]
    stdin: str
    env: RunEnv = field(default_factory=dict)

    def display(self, program: str | None = None) -> str:
        """The exact argv, shell-quoted, with the prompt shown as the here-string it is fed as;
        ``program`` replaces ``argv[0]`` (the resolved path of the binary)."""
        argv = [program or self.argv[0], *self.argv[1:]]
        return f"{shlex.join(argv)} <<< {shlex.quote(self.stdin)}"


@dataclass
class ParsedResult:
    """What a finished run amounts to, whatever mode the CLI printed in."""

    output: str = ""
    backend_session_id: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    model: str | None = None
    error: str | None = None
    is_error: bool = False


class StreamParser(ABC):
    """Turns a CLI's stream lines into unified events and folds them into a result."""

    def __init__(self) -> None:
        self.result = ParsedResult()
        self._text_parts: list[str] = []
        self._plain_lines: list[str] = []
        self.json_lines = 0
        self.final_text: str | None = None
        # Set by each parser when the CLI printed its terminal line (its result): from
        # then on the result is known, although the process has not exited yet.
        self.completed = False

    @abstractmethod
    def feed_json(self, obj: dict[str, Any]) -> list[Event]:
        """Handle one decoded JSON line."""

    def feed(self, line: str) -> list[Event]:
        line = line.strip()
        if not line:
            return []
        try:
            obj = json.loads(line)
        except ValueError:
            return self.feed_garbage(line)
        if not isinstance(obj, dict):
            return self.feed_garbage(line)
        self.json_lines += 1
        return self.feed_json(obj)

    def feed_garbage(self, line: str) -> list[Event]:
        """A non-JSON line is never turned into assistant text while streaming.

        It is kept (bounded) so that an error can quote it, and so that the plain-text
        output of a CLI run in text mode still parses to its text.
        """
        if len(self._plain_lines) < 1000:
            self._plain_lines.append(line[:10_000])
        return []

    @property
    def garbage_tail(self) -> str | None:
        return self._plain_lines[-1][-500:] if self._plain_lines else None

    def add_text(self, text: str) -> None:
        self._text_parts.append(text)

    @property
    def streamed_text(self) -> str:
        return "".join(self._text_parts)

    def finish(
        self, exit_code: int | None, stderr_tail: str = "", *, expect_json: bool = False
    ) -> ParsedResult:
        """Complete the result once the process has ended.

        ``expect_json`` is set for runs we started in a structured mode: there, a run that
        printed no JSON at all is a failure even with exit code 0.
        """
        result = self.result
        if not self.json_lines and exit_code == 0:
            if not expect_json and self._plain_lines:
                result.output = "\n".join(self._plain_lines)
                return result
            if expect_json and not result.error:
                detail = self.garbage_tail or last_meaningful_line(stderr_tail)
                result.error = "backend printed no parseable output" + (
                    f": {detail}" if detail else ""
                )
        if self.final_text is not None:
            result.output = self.final_text
        elif not result.output:
            result.output = self.streamed_text
        if exit_code not in (0, None) and not result.error:
            result.error = self.describe_failure(exit_code, stderr_tail)
        if result.error:
            result.is_error = True
        return result

    def describe_failure(self, exit_code: int, stderr_tail: str) -> str:
        detail = last_meaningful_line(stderr_tail) or self.garbage_tail
        if detail:
            return f"backend exited with code {exit_code}: {detail}"
        return f"backend exited with code {exit_code}"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def last_meaningful_line(text: str) -> str | None:
    """The stderr line that best explains a failure.

    The last line mentioning an error wins over plain noise; stack-trace frames and
    braces of pretty-printed objects never count; terminal colours are removed.
    """
    candidates = []
    for line in ANSI_ESCAPE.sub("", text).strip().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("at ") and stripped not in ("}", "{"):
            candidates.append(stripped[:500])
    for line in reversed(candidates):
        if "error" in line.lower():
            return line
    return candidates[-1] if candidates else None


class Backend(ABC):
    """One CLI. Subclasses fill in argv building and parsing."""

    name: str = ""
    display_name: str = ""
    vendor: str = ""
    builtin_aliases: dict[str, str] = {}
    # How the CLI takes a model name (``<model_flag> <model>``).
    model_flag: str = "-m"
    # Extra flags a server client may pass (flag name, takes a value?).
    extra_flag_allowlist: dict[str, bool] = {}
    # Extra flags that lift the permission ceiling; refused unless dangerous modes are allowed.
    dangerous_flags: frozenset[str] = frozenset()

    def __init__(
        self,
        command: str | None = None,
        env: dict[str, str] | None = None,
        aliases: dict[str, str] | None = None,
        default_model: str | None = None,
    ) -> None:
        self.command = command or self.name
        self.extra_env: RunEnv = MappingProxyType(dict(env or {}))
        self.run_env: RunEnv = MappingProxyType({**inherited_env(), **self.extra_env})
        self.aliases = {**self.builtin_aliases, **(aliases or {})}
        self.default_model = default_model or None
        self._availability: tuple[float, str | None] | None = None
        self._reported_miss = 0.0  # monotonic time of the last miss a report saw
        self._version: str | None = None
        self._lock = threading.Lock()

    # -- models -------------------------------------------------------------------------------

    def resolve_model(self, model: str | None) -> str | None:
        """Map aliases; a bare backend name or nothing means "the CLI's own default"."""
        model = (model or "").strip() or self.default_model
        if not model or model == self.name:
            return None
        return self.aliases.get(model, model)

    # -- invocation ---------------------------------------------------------------------------

    def model_args(self, opts: RunOptions) -> list[str]:
        """The model flag and the resolved model, or nothing for the CLI's own default."""
        model = self.resolve_model(opts.model)
        return [self.model_flag, model] if model else []

    @abstractmethod
    def build_invocation(self, opts: RunOptions) -> Invocation:
        """argv + stdin for a new run, or a resume when ``opts.resume_id`` is set."""

    @abstractmethod
    def new_stream_parser(
        self, *, model: str | None = None, workdir: str | None = None
    ) -> StreamParser:
        """A fresh parser for one run's stream output (model/workdir fill gaps in the stream)."""

    def parse_output(
        self, stdout: str, stderr: str = "", exit_code: int | None = 0
    ) -> ParsedResult:
        """Parse a finished run's stdout in any structured mode (default: as a stream)."""
        parser = self.new_stream_parser()
        for line in stdout.splitlines():
            parser.feed(line)
        return parser.finish(exit_code, stderr)

    def check_extra_flags(self, flags: list[str], *, allow_dangerous: bool) -> str | None:
        """Return why ``flags`` are refused, or None when they are acceptable."""
        expecting_value = False
        for flag in flags:
            if expecting_value:
                expecting_value = False
                continue
            name = flag.split("=", 1)[0]
            if not name.startswith("-"):
                return f"unexpected value {flag!r}: extra flags must start with '-'"
            if name not in self.extra_flag_allowlist:
                return f"flag {name!r} is not allowed for backend {self.name}"
            if name in self.dangerous_flags and not allow_dangerous:
                return f"flag {name!r} lifts the permission ceiling (server.allow_dangerous_modes)"
            expecting_value = self.extra_flag_allowlist[name] and "=" not in flag
        if expecting_value:
            return f"flag {flags[-1]!r} needs a value"
        return None

    def child_env(self) -> RunEnv:
        """The environment for the CLI (read-only; see :data:`RunEnv`): the gateway's at
        the backend's construction minus clinvk's own (secret) variables, plus the
        backend's configured ``env``. The process run adds its per-run variables on top."""
        return self.run_env

    def cleanup_ephemeral(
        self, backend_session_id: str | None, workdir: str, env: RunEnv
    ) -> None:
        """Remove what a run left behind when it should have left nothing (default: no-op)."""

    # -- availability -------------------------------------------------------------------------

    def executable_path(self, ttl: float = 30.0) -> str | None:
        """Where the binary resolves to, or None.

        A path found is cached for ``ttl`` seconds; "not found" is never cached, so a CLI
        installed (or a PATH fixed) while the server runs is seen on the next request, and
        one caller's miss can never make the backend look missing to another.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._availability
            if cached and now - cached[0] < ttl:
                return cached[1]
        path = shutil.which(self.command, path=self.search_path())
        if path is not None:
            with self._lock:
                if self._availability is None or self._availability[0] <= now:
                    self._availability = (now, path)
        return path

    def search_path(self) -> str | None:
        """The PATH the CLI is looked up on: the backend's own ``env`` or the process's."""
        return self.extra_env.get("PATH", os.environ.get("PATH"))

    def reported_available(self, miss_ttl: float = REPORT_MISS_TTL_SECS) -> bool:
        """Availability for reports (``/health``): a miss is remembered for ``miss_ttl``
        seconds so a probe loop does not walk PATH on every call; a CLI that appears is
        reported within that time. Runs never read this memory (see :meth:`executable_path`).
        """
        if time.monotonic() - self._reported_miss < miss_ttl:
            return False
        if self.executable_path() is not None:
            return True
        self._reported_miss = time.monotonic()
        return False

    @property
    def available(self) -> bool:
        return self.executable_path() is not None

    def version(self) -> str | None:
        """``<cli> --version`` output, cached for the life of the process."""
        if self._version is not None:
            return self._version or None
        path = self.executable_path()
        if not path:
            return None
        try:
            proc = subprocess.run(
                [path, "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
                env=self.child_env(),
                check=False,
            )
            text = proc.stdout.strip().splitlines()
            self._version = text[-1] if text and proc.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            self._version = ""
        return self._version or None


def plan_or_approval(opts: RunOptions, flag: str, approvals: dict[str, str]) -> list[str]:
    """For CLIs with one permission flag: a read-only sandbox is their ``plan`` mode, else the
    approval mode's value (nothing for ``default``: the CLI's own setting)."""
    if opts.sandbox_mode == SandboxMode.READ_ONLY:
        return [flag, "plan"]
    value = approvals.get(opts.approval_mode)
    return [flag, value] if value else []


def system_prompt_first(opts: RunOptions) -> str:
    """The prompt for CLIs with no system-prompt flag: the instructions lead it."""
    return f"{opts.system_prompt}\n\n{opts.prompt}" if opts.system_prompt else opts.prompt


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
