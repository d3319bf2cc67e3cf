"""Configuration: defaults < config file < environment < flags, validated strictly.

The Go tool silently fell back to defaults on a broken file and honoured almost no
environment overrides. Here every value is type-checked and range-checked, every problem
is reported with its origin (file and line, environment variable, flag) and the dotted key,
and each value remembers where it came from so ``clinvk config show`` can explain it.

This module knows nothing about HTTP or click: the server and the CLI read the frozen
:class:`Config` tree and translate :class:`clinvk.core.errors.ConfigError` themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import re
import tempfile
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clinvk.core.errors import ConfigError

__all__ = [
    "APPROVAL_MODES",
    "BUILTIN_ALIASES",
    "KNOWN_BACKENDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OUTPUT_FORMATS",
    "SANDBOX_MODES",
    "BackendConfig",
    "Config",
    "OutputConfig",
    "ParallelConfig",
    "ServerConfig",
    "SessionConfig",
    "UnifiedFlagsConfig",
    "clinvk_home",
    "default_config_path",
    "env_var_for",
    "is_secret_name",
    "key_reference",
    "load_config",
    "resolve_config_path",
    "set_config_value",
]

KNOWN_BACKENDS: tuple[str, ...] = ("claude", "codex", "gemini")
APPROVAL_MODES: tuple[str, ...] = ("default", "auto", "none", "always")
SANDBOX_MODES: tuple[str, ...] = ("default", "read-only", "workspace", "full")
OUTPUT_FORMATS: tuple[str, ...] = ("text", "json", "stream-json")
UNKNOWN_MODEL_POLICIES: tuple[str, ...] = ("auto", "default_backend", "error")
LOG_FORMATS: tuple[str, ...] = ("text", "json")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

MIB = 1024 * 1024

#: Built-in model aliases per backend; ``backends.<name>.aliases`` is merged over these, so
#: ``config show`` lists every alias in effect. They match the adapters' ``builtin_aliases``
#: in ``clinvk/backends/`` (a test keeps the two in step). Claude takes its own tier aliases
#: (always the latest model of the tier); see docs/configuration.md for the others.
BUILTIN_ALIASES: Mapping[str, Mapping[str, str]] = {
    "claude": {
        "fast": "haiku",
        "quick": "haiku",
        "balanced": "sonnet",
        "default": "sonnet",
        "best": "opus",
        "powerful": "opus",
    },
    "codex": {
        "fast": "gpt-5.4-mini",
        "quick": "gpt-5.4-mini",
        "balanced": "gpt-5.5",
        "default": "gpt-5.5",
        "best": "gpt-5.5-codex",
        "powerful": "gpt-5.5-codex",
    },
    "gemini": {
        "fast": "gemini-2.5-flash",
        "quick": "gemini-2.5-flash",
        "balanced": "gemini-2.5-pro",
        "default": "gemini-2.5-pro",
        "best": "gemini-3.1-pro-preview",
        "powerful": "gemini-3.1-pro-preview",
    },
}

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MASK = "****"

# --------------------------------------------------------------------------- checks
# A check returns None when the (already type-correct) value is fine, else the reason.

Check = Callable[[Any], "str | None"]


def _at_least(lo: int) -> Check:
    def check(v: int) -> str | None:
        return None if v >= lo else f"must be >= {lo}, got {v}"

    return check


def _between(lo: int, hi: int) -> Check:
    def check(v: int) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


def _one_of(choices: Iterable[str], *, allow_empty: bool = False) -> Check:
    options = tuple(choices)

    def check(v: str) -> str | None:
        if v in options or (allow_empty and v == ""):
            return None
        listed = ", ".join(repr(o) for o in options)
        if allow_empty:
            listed += " or '' (not set)"
        return f"must be one of {listed}, got {v!r}"

    return check


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _check_host(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        pass
    if v == "localhost" or (0 < len(v) <= 253 and re.fullmatch(r"[A-Za-z0-9.-]+", v)):
        return None
    return f"must be an IP address or a host name, got {v!r}"


def _check_storage_uri(v: str) -> str | None:
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", v):
        return None
    return f"must be a storage URI such as 'memory://' or 'redis://host:6379', got {v!r}"


def _check_gopass_path(v: str) -> str | None:
    if v == "" or re.fullmatch(r"[A-Za-z0-9/_.\-]+", v):
        return None
    return f"may only contain letters, digits and / _ . -, got {v!r}"


def _each(check: Check) -> Check:
    def check_all(items: tuple[str, ...]) -> str | None:
        for i, item in enumerate(items):
            reason = check(item)
            if reason:
                return f"item {i} ({item!r}): {reason}"
        return None

    return check_all


def _proxy(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=False)
        return None
    except ValueError:
        return "must be an IP address or CIDR network"


def _origin(v: str) -> str | None:
    if v == "*" or re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", v):
        return None
    return "must be '*' or an origin such as 'https://app.example.com'"


def _absolute(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path"


def _key_id(v: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{24}", v):
        return None
    return "must be a key id (24 hex digits, as `clinvk keys id` prints), never the key itself"


def _non_empty_item(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _env_names(v: dict[str, str]) -> str | None:
    for name in v:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return f"{name!r} is not a valid environment variable name"
    return None


def _alias_names(v: dict[str, str]) -> str | None:
    for name, model in v.items():
        if not name.strip() or any(c.isspace() for c in name):
            return f"alias name {name!r} must be non-empty without spaces"
        if not model.strip():
            return f"alias {name!r} must map to a non-empty model name"
    return None


def _lower(v: str) -> str:
    return v.lower()


# ------------------------------------------------------------------ schema helpers


def _key(default: Any, doc: str, *, check: Check | None = None,
         norm: Callable[[Any], Any] | None = None) -> Any:
    """Declare a config key: its default, a one-line meaning for the docs and a check."""
    meta = {"doc": doc, "check": check, "norm": norm}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerConfig:
    """``server.*``: the HTTP server and the limits it enforces on every run."""

    host: str = _key("127.0.0.1", "Address to bind.", check=_check_host)
    port: int = _key(8080, "TCP port to bind (0 = any free port).", check=_between(0, 65535))
    request_timeout_secs: int = _key(
        300, "Total time one backend run may take; the process group is killed after it.",
        check=_at_least(1))
    read_timeout_secs: int = _key(30, "Time allowed to read a request (0 = no limit).",
                                  check=_at_least(0))
    write_timeout_secs: int = _key(300, "Time allowed to write a response (0 = no limit).",
                                   check=_at_least(0))
    idle_timeout_secs: int = _key(120, "Keep-alive idle time of a client connection.",
                                  check=_at_least(0))
    backend_idle_timeout_secs: int = _key(
        0, "Kill a backend that prints nothing for this long (0 = off).", check=_at_least(0))
    backend_nice: int = _key(
        0, "Niceness added to backend CLI processes (0-19), so the server keeps its CPU "
           "share when they saturate the cores (0 = same priority).", check=_between(0, 19))
    rate_limit_enabled: bool = _key(False, "Enable rate limiting per API key, else per client IP.")
    rate_limit_rps: int = _key(10, "Sustained requests per second per client.",
                               check=_at_least(0))
    rate_limit_burst: int = _key(20, "Requests a client may make at once above the rate.",
                                 check=_at_least(0))
    rate_limit_cleanup_secs: int = _key(
        180, "How long idle per-client limiter state is kept (Go-compatible key).",
        check=_at_least(1))
    rate_limit_storage_uri: str = _key(
        "memory://", "Limiter storage shared by workers, e.g. redis://host:6379.",
        check=_check_storage_uri)
    trusted_proxies: tuple[str, ...] = _key(
        (), "Proxy IPs/CIDRs whose X-Forwarded-For is believed.", check=_each(_proxy))
    max_request_body_bytes: int = _key(10 * MIB, "Larger request bodies get 413 (0 = no limit).",
                                       check=_at_least(0))
    cors_allowed_origins: tuple[str, ...] = _key(
        (), "Allowed CORS origins; empty = http(s) localhost/127.0.0.1 on any port.",
        check=_each(_origin))
    cors_allow_credentials: bool = _key(False, "Send Access-Control-Allow-Credentials.")
    cors_max_age: int = _key(300, "Seconds a browser may cache a preflight answer.",
                             check=_at_least(0))
    allowed_workdir_prefixes: tuple[str, ...] = _key(
        (), "If set, a request workdir must resolve under one of these.", check=_each(_absolute))
    blocked_workdir_prefixes: tuple[str, ...] = _key(
        (), "Extra blocked workdir prefixes, added to the built-in list.", check=_each(_absolute))
    allow_system_root_workdirs: bool = _key(
        False, "Allow a system root itself (/, /usr, /var, /home, /tmp, ...) as a workdir.")
    unknown_model: str = _key(
        "auto", "OpenAI/Anthropic model naming no backend or alias: default_backend runs it on "
        "the default backend with the name passed through, error answers 404, auto = "
        "default_backend when response_envelope is false (the Go behaviour), else error.",
        check=_one_of(UNKNOWN_MODEL_POLICIES), norm=_lower)
    max_json_depth: int = _key(64, "Deepest nesting of arrays and objects in a JSON body.",
                               check=_between(2, 10_000))
    metrics_enabled: bool = _key(False, "Serve Prometheus metrics at /metrics.")
    metrics_require_auth: bool = _key(False, "Require an API key for /metrics.")
    api_keys_gopass_path: str = _key(
        "", "gopass entry holding comma-separated API keys (used when CLINVK_API_KEYS is unset).",
        check=_check_gopass_path)
    admin_key_ids: tuple[str, ...] = _key(
        (), "Key ids (`clinvk keys id`) whose callers see every key's sessions, jobs and usage.",
        check=_each(_key_id))
    allow_unauthenticated_remote: bool = _key(
        False, "Allow binding a non-loopback address with no API keys configured.")
    allow_dangerous_modes: bool = _key(
        False, "Allow approval_mode none, sandbox_mode full and permission-bypassing flags.")
    response_envelope: bool = _key(
        True, "Wrap /api/v1 bodies in {success, data}; false = bare Go-compatible bodies.")
    max_concurrent_runs: int = _key(16, "Backend runs at once per server process.",
                                    check=_at_least(1))
    queue_timeout_secs: int = _key(30, "How long a run waits for a slot before 503.",
                                   check=_at_least(0))
    max_output_bytes: int = _key(16 * MIB, "Cap on captured output of one run.",
                                 check=_at_least(1024))
    max_line_bytes: int = _key(8 * MIB, "Cap on one stream line from a backend.",
                               check=_at_least(1024))
    max_parallel_tasks: int = _key(32, "Most tasks in one parallel request.", check=_at_least(1))
    max_chain_steps: int = _key(32, "Most steps in one chain request.", check=_at_least(1))
    max_compare_backends: int = _key(8, "Most backends in one compare request.",
                                     check=_at_least(1))
    stream_keepalive_secs: int = _key(15, "Keep-alive comment/ping interval on silent streams "
                                          "(0 = off).", check=_at_least(0))
    jobs_max_queued: int = _key(100, "Jobs waiting to start across the server; more get 429 "
                                     "(0 = no limit).", check=_at_least(0))
    jobs_max_events: int = _key(10_000, "Events kept per job; older ones are dropped and a "
                                        "marker event says so (0 = no cap).", check=_at_least(0))
    jobs_retention_secs: int = _key(7 * 24 * 3600, "Finished jobs older than this are deleted "
                                                   "at start.", check=_at_least(60))
    jobs_retention_count: int = _key(1000, "Finished jobs kept at most (newest first), "
                                           "pruned at start.", check=_at_least(1))
    jobs_threads: int = _key(8, "Threads per server process that run jobs (embedded executor).",
                             check=_at_least(1))
    workers: int = _key(1, "gunicorn worker processes.", check=_at_least(1))
    threads: int = _key(32, "Threads per gunicorn worker (gthread).", check=_at_least(1))
    log_format: str = _key("text", "Log line format.", check=_one_of(LOG_FORMATS), norm=_lower)
    log_level: str = _key("info", "Minimum log level.", check=_one_of(LOG_LEVELS), norm=_lower)
    graceful_timeout_secs: int = _key(30, "Time running requests get to finish on shutdown.",
                                      check=_at_least(0))


@dataclass(frozen=True)
class BackendConfig:
    """``backends.<name>.*``: how one CLI is found, started and defaulted."""

    command: str = _key("", "Binary name or path (default: the backend name on PATH).",
                        check=_non_empty)
    model: str = _key("", "Default model ('' = the CLI's own default).")
    env: dict[str, str] = _key({}, "Extra environment for the child process.", check=_env_names)
    aliases: dict[str, str] = _key(
        {}, "Model aliases, merged over the built-in fast/balanced/best ones.",
        check=_alias_names)
    allowed_tools: str = _key("", "Claude --allowedTools value (ignored by other backends).")
    approval_mode: str = _key("", "Approval mode for this backend, overriding unified_flags.",
                              check=_one_of(APPROVAL_MODES, allow_empty=True), norm=_lower)
    sandbox_mode: str = _key("", "Sandbox mode for this backend, overriding unified_flags.",
                             check=_one_of(SANDBOX_MODES, allow_empty=True), norm=_lower)
    extra_flags: tuple[str, ...] = _key((), "Flags appended to every run of this backend.",
                                        check=_each(_non_empty_item))
    enabled: bool = _key(True, "false = the backend is refused everywhere.")
    system_prompt: str = _key("", "System prompt used when a request gives none.")
    timeout_secs: int = _key(0, "Run timeout for this backend (0 = server/CLI default).",
                             check=_at_least(0))


@dataclass(frozen=True)
class UnifiedFlagsConfig:
    """``unified_flags.*``: defaults for the backend-neutral run options."""

    approval_mode: str = _key("default", "Default approval mode.",
                              check=_one_of(APPROVAL_MODES), norm=_lower)
    sandbox_mode: str = _key("default", "Default sandbox mode.",
                             check=_one_of(SANDBOX_MODES), norm=_lower)
    verbose: bool = _key(False, "Ask backends for verbose output.")
    dry_run: bool = _key(False, "Make every run a dry run (prints the argv, starts nothing).")
    max_turns: int = _key(0, "Agent turn limit (0 = backend default).", check=_at_least(0))
    max_tokens: int = _key(0, "Token limit (0 = backend default; no current CLI has a flag).",
                           check=_at_least(0))
    command_timeout_secs: int = _key(0, "CLI run timeout (0 = none; --timeout wins).",
                                     check=_at_least(0))


@dataclass(frozen=True)
class SessionConfig:
    """``session.*``: the session store."""

    auto_resume: bool = _key(False, "Plain `clinvk PROMPT` continues the last session.")
    retention_days: int = _key(30, "`sessions clean` removes sessions unused this long (0 = keep).",
                               check=_at_least(0))
    default_tags: tuple[str, ...] = _key((), "Tags added to every new session.",
                                         check=_each(_non_empty_item))
    store_token_usage: bool = _key(True, "Accumulate token usage in the session record.")


@dataclass(frozen=True)
class OutputConfig:
    """``output.*``: how the CLI prints results."""

    format: str = _key("text", "Default CLI output format.", check=_one_of(OUTPUT_FORMATS),
                       norm=_lower)
    show_tokens: bool = _key(False, "Print token usage after a text result.")
    show_timing: bool = _key(False, "Print the duration after a text result.")
    color: bool = _key(True, "Colour terminal output.")


@dataclass(frozen=True)
class ParallelConfig:
    """``parallel.*``: fan-out defaults."""

    max_workers: int = _key(3, "Default concurrent tasks of a parallel run.", check=_at_least(1))
    max_parallel_limit: int = _key(16, "Upper bound a request's max_parallel is capped to.",
                                   check=_at_least(1))
    fail_fast: bool = _key(False, "Default: cancel the other tasks on the first failure.")
    aggregate_output: bool = _key(True, "CLI prints one combined result instead of per task.")


def _default_backend_config(name: str) -> BackendConfig:
    return BackendConfig(command=name, aliases=dict(BUILTIN_ALIASES[name]))


def _default_backends() -> dict[str, BackendConfig]:
    return {name: _default_backend_config(name) for name in KNOWN_BACKENDS}


_SECTION_CLASSES: dict[str, type] = {
    "server": ServerConfig,
    "unified_flags": UnifiedFlagsConfig,
    "session": SessionConfig,
    "output": OutputConfig,
    "parallel": ParallelConfig,
}


#: Top-level mappings of the file (everything else at the top is a plain key).
_SECTIONS = ("server", "backends", "unified_flags", "session", "output", "parallel")


# ------------------------------------------------------------------------- key specs


def env_var_for(dotted_key: str) -> str:
    """Environment variable overriding a key: ``server.port`` -> ``CLINVK_SERVER_PORT``."""
    return "CLINVK_" + dotted_key.upper().replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class _Spec:
    key: str           # dotted key, e.g. "server.port" or "backends.claude.model"
    kind: str          # str | int | bool | list | map
    default: Any
    doc: str
    check: Check | None = None
    norm: Callable[[Any], Any] | None = None

    @property
    def env_var(self) -> str | None:
        return None if self.kind == "map" else env_var_for(self.key)


_KIND_BY_TYPE = {str: "str", int: "int", bool: "bool"}


def _kind(tp: Any) -> str:
    if tp in _KIND_BY_TYPE:
        return _KIND_BY_TYPE[tp]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "list"
    if origin is dict:
        return "map"
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover - schema bug


def _field_specs(cls: type, prefix: str, defaults: Any) -> list[_Spec]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        specs.append(_Spec(
            key=f"{prefix}.{f.name}", kind=_kind(hints[f.name]),
            default=getattr(defaults, f.name), doc=f.metadata["doc"],
            check=f.metadata["check"], norm=f.metadata["norm"]))
    return specs


def _build_specs() -> dict[str, _Spec]:
    specs = [_Spec("default_backend", "str", "claude",
                   "Backend used when none is named.", check=_one_of(KNOWN_BACKENDS))]
    specs += _field_specs(ServerConfig, "server", ServerConfig())
    for name, backend in _default_backends().items():
        specs += _field_specs(BackendConfig, f"backends.{name}", backend)
    for section in ("unified_flags", "session", "output", "parallel"):
        cls = _SECTION_CLASSES[section]
        specs += _field_specs(cls, section, cls())
    return {s.key: s for s in specs}


_SPECS: dict[str, _Spec] = _build_specs()
_ENV_TO_KEY: dict[str, str] = {s.env_var: k for k, s in _SPECS.items() if s.env_var}
_MAP_ENV_VARS: dict[str, str] = {env_var_for(k): k for k, s in _SPECS.items() if s.kind == "map"}
#: Legacy variable names of the Go tool; the canonical CLINVK_<SECTION>_<KEY> name wins.
_LEGACY_ENV: dict[str, str] = {
    "CLINVK_BACKEND": "default_backend",
    "CLINVK_CLAUDE_MODEL": "backends.claude.model",
    "CLINVK_CODEX_MODEL": "backends.codex.model",
    "CLINVK_GEMINI_MODEL": "backends.gemini.model",
    "CLINVK_API_KEYS_GOPASS_PATH": "server.api_keys_gopass_path",
}
#: Variables under these prefixes are config overrides; an unknown one is a typo, not ignored.
_RESERVED_ENV_PREFIXES = tuple(
    f"CLINVK_{p}_" for p in ("SERVER", "UNIFIED_FLAGS", "SESSION", "OUTPUT", "PARALLEL", "BACKENDS")
)


def is_secret_name(name: str) -> bool:
    """True for variable names that look like credentials (masked in ``config show``)."""
    return bool(_SECRET_NAME.search(name))


def key_reference() -> list[dict[str, Any]]:
    """Every key with type, default, meaning and env variable (for docs and ``--help``)."""
    rows = []
    for spec in _SPECS.values():
        default = spec.default
        if isinstance(default, tuple):
            default = list(default)
        rows.append({"key": spec.key, "type": spec.kind, "default": default,
                     "doc": spec.doc, "env": spec.env_var})
    return rows


# ------------------------------------------------------------------ problems/errors


@dataclass(frozen=True)
class _Problem:
    origin: str
    key: str
    reason: str
    line: int = 0  # file line, only used to report file problems in reading order

    def render(self) -> str:
        return f"{self.origin}: {self.key}: {self.reason}" if self.key else \
            f"{self.origin}: {self.reason}"


def _raise(problems: list[_Problem]) -> typing.NoReturn:
    if len(problems) == 1:
        message = "invalid configuration: " + problems[0].render()
    else:
        lines = "\n".join("  - " + p.render() for p in problems)
        message = f"invalid configuration ({len(problems)} errors):\n{lines}"
    raise ConfigError(
        message,
        field=problems[0].key or None,
        details=[{"origin": p.origin, "key": p.key, "reason": p.reason} for p in problems],
    )


def _origin_text(source: str, line: int | None = None) -> str:
    if source.startswith("file:"):
        path = source[len("file:"):]
        return f"{path}, line {line}" if line else path
    if source.startswith("env:"):
        return f"environment variable {source[len('env:'):]}"
    if source == "flag":
        return "command-line option"
    return source


def _suggest(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _unknown_key_reason(dotted: str) -> str:
    """Explain an unknown dotted key, suggesting the closest known one."""
    prefix, _, leaf = dotted.rpartition(".")
    if prefix:
        siblings = {k.rpartition(".")[2]: k for k in _SPECS if k.rpartition(".")[0] == prefix}
    else:
        siblings = {k: k for k in _SPECS if "." not in k} | {s: s for s in _SECTIONS}
    match = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if match:
        return f"unknown key (did you mean {siblings[match[0]]!r}?)"
    elsewhere = [k for k in _SPECS if k.rpartition(".")[2] == leaf]
    if elsewhere:
        return f"unknown key (did you mean {elsewhere[0]!r}?)"
    return "unknown key"


# ---------------------------------------------------------------- value coercion


class _Invalid(Exception):
    """A value failed a type or range check; the text is the reason."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}".replace("True", "true").replace("False", "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {"str": "a string", "int": "an integer", "bool": "a boolean (true/false)",
             "list": "a list of strings", "map": "a mapping of string to string"}


def _coerce(spec: _Spec, value: Any) -> Any:
    """Check a structured value (YAML or Python) against its key; return the stored form."""
    if value is None:
        raise _Invalid("no value given (remove the key to use the default)")
    ok = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v),
        "map": lambda v: isinstance(v, Mapping) and all(
            isinstance(k, str) and isinstance(i, str) for k, i in v.items()),
    }[spec.kind]
    if not ok(value):
        got = _type_name(value)
        if spec.kind == "list" and isinstance(value, (list, tuple)):
            bad = next(i for i in value if not isinstance(i, str))
            got = f"a list containing {_type_name(bad)} (quote it)"
        elif spec.kind == "str" and isinstance(value, (bool, int, float)):
            got += " (quote it to make it a string)"
        elif spec.kind == "map" and isinstance(value, Mapping):
            bad_k, bad_v = next((k, v) for k, v in value.items()
                                if not (isinstance(k, str) and isinstance(v, str)))
            got = f"{_type_name(bad_v)} for {str(bad_k)!r} (quote it)"
        raise _Invalid(f"expected {_EXPECTED[spec.kind]}, got {got}")
    if spec.kind == "list":
        value = tuple(value)
    elif spec.kind == "map":
        value = dict(value)
    if spec.norm:
        value = spec.norm(value)
    if spec.check:
        reason = spec.check(value)
        if reason:
            raise _Invalid(reason)
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_text(spec: _Spec, text: str) -> Any:
    """Turn a string (env variable, flag, ``config set``) into the key's type."""
    if spec.kind == "str":
        return text
    if spec.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise _Invalid(f"expected an integer, got {text!r}") from None
    if spec.kind == "bool":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid(f"expected a boolean (true/false/1/0/yes/no), got {text!r}")
    if spec.kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    try:  # map: YAML/JSON flow mapping, e.g. {FOO: bar}
        parsed = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        raise _Invalid(f"expected a mapping such as '{{NAME: value}}', got {text!r}") from None
    if not isinstance(parsed, dict):
        raise _Invalid(f"expected a mapping such as '{{NAME: value}}', got {text!r}")
    return parsed


def _merge_aliases(key: str, value: dict[str, str]) -> dict[str, str]:
    """Aliases are merged over the built-ins so a user adds or changes, never loses, them."""
    if key.endswith(".aliases"):
        backend = key.split(".")[1]
        return {**BUILTIN_ALIASES[backend], **value}
    return value


def _split_map_entry(dotted: str) -> tuple[str, str] | None:
    """``backends.claude.env.FOO`` -> (``backends.claude.env``, ``FOO``), else None."""
    parts = dotted.split(".")
    if len(parts) == 4 and parts[0] == "backends":
        base = ".".join(parts[:3])
        if base in _SPECS and _SPECS[base].kind == "map" and parts[3]:
            return base, parts[3]
    return None


# ---------------------------------------------------------------------- the Config


@dataclass(frozen=True)
class Config:
    """The effective configuration; ``sources[key]`` says where each value came from."""

    default_backend: str = "claude"
    server: ServerConfig = field(default_factory=ServerConfig)
    backends: dict[str, BackendConfig] = field(default_factory=_default_backends)
    unified_flags: UnifiedFlagsConfig = field(default_factory=UnifiedFlagsConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    #: The file that was read (None if no file was read).
    path: Path | None = field(default=None, compare=False)

    def get(self, dotted_key: str) -> Any:
        """Value of a dotted key (``server.port``, ``backends.claude.env.FOO``); sections too."""
        if dotted_key in _SPECS:
            return self._flat()[dotted_key]
        entry = _split_map_entry(dotted_key)
        if entry:
            mapping = self._flat()[entry[0]]
            if entry[1] in mapping:
                return mapping[entry[1]]
            raise ConfigError(f"{dotted_key}: not set", field=dotted_key)
        node: Any = self
        for part in dotted_key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif dataclasses.is_dataclass(node) and part in {f.name for f in
                                                             dataclasses.fields(node)}:
                node = getattr(node, part)
            else:
                raise ConfigError(f"{dotted_key}: {_unknown_key_reason(dotted_key)}",
                                  field=dotted_key)
        return node

    def with_overrides(self, mapping: Mapping[str, Any], source: str = "flag") -> Config:
        """A new Config with dotted keys overridden (e.g. from CLI flags); None = not given.

        Values may be typed (``9000``) or strings parsed like environment values (``"9000"``).
        """
        flat = self._flat()
        sources = dict(self.sources)
        problems: list[_Problem] = []
        for key, value in mapping.items():
            if value is None:
                continue
            _apply(flat, sources, problems, key, value, source, _origin_text(source),
                   from_text=isinstance(value, str))
        return _build(flat, sources, problems, path=self.path)

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) in the config file's shape."""
        out: dict[str, Any] = {}
        for key, value in self._flat().items():
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
                if mask_secrets and key.endswith(".env"):
                    value = {k: (_MASK if v and is_secret_name(k) else v)
                             for k, v in value.items()}
            node = out
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out

    def describe(self, mask_secrets: bool = True) -> list[tuple[str, Any, str]]:
        """(key, value, source) for every key, for ``clinvk config show``."""
        flat_dict = self.to_dict(mask_secrets=mask_secrets)
        rows = []
        for key in _SPECS:
            node: Any = flat_dict
            for part in key.split("."):
                node = node[part]
            rows.append((key, node, self.sources.get(key, "default")))
        return rows

    def _flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"default_backend": self.default_backend}
        for section in _SECTION_CLASSES:
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):
                flat[f"{section}.{f.name}"] = getattr(obj, f.name)
        for name in KNOWN_BACKENDS:
            obj = self.backends[name]
            for f in dataclasses.fields(obj):
                flat[f"backends.{name}.{f.name}"] = getattr(obj, f.name)
        return flat


def _apply(flat: dict[str, Any], sources: dict[str, str], problems: list[_Problem],
           key: str, value: Any, source: str, origin: str, *, from_text: bool) -> None:
    """Validate one override and store it in ``flat``; record a problem instead on failure."""
    entry = _split_map_entry(key)
    spec = _SPECS.get(entry[0] if entry else key)
    if spec is None:
        problems.append(_Problem(origin, key, _unknown_key_reason(key)))
        return
    try:
        if entry:
            if not isinstance(value, str):
                raise _Invalid(f"expected a string, got {_type_name(value)}")
            new = _coerce(spec, {**flat[spec.key], entry[1]: value})
        else:
            raw = _parse_text(spec, value) if from_text else value
            new = _coerce(spec, raw)
            if spec.kind == "map":
                new = _merge_aliases(spec.key, new)
    except _Invalid as exc:
        problems.append(_Problem(origin, key, str(exc)))
        return
    flat[spec.key] = new
    sources[spec.key] = source


def _cross_checks(flat: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Rules that involve several keys: (key to blame, all keys involved, reason)."""
    out = []
    if flat["server.rate_limit_enabled"]:
        for key in ("server.rate_limit_rps", "server.rate_limit_burst"):
            if flat[key] < 1:
                out.append((key, (key, "server.rate_limit_enabled"),
                            "must be >= 1 when server.rate_limit_enabled is true, "
                            f"got {flat[key]}"))
    if flat["server.cors_allow_credentials"] and "*" in flat["server.cors_allowed_origins"]:
        out.append(("server.cors_allow_credentials",
                    ("server.cors_allow_credentials", "server.cors_allowed_origins"),
                    "cannot be true while server.cors_allowed_origins contains '*'"))
    if flat["server.max_line_bytes"] > flat["server.max_output_bytes"]:
        out.append(("server.max_line_bytes", ("server.max_line_bytes", "server.max_output_bytes"),
                    f"must not exceed server.max_output_bytes ({flat['server.max_output_bytes']})"
                    f", got {flat['server.max_line_bytes']}"))
    if flat["parallel.max_workers"] > flat["parallel.max_parallel_limit"]:
        out.append(("parallel.max_workers", ("parallel.max_workers", "parallel.max_parallel_limit"),
                    "must not exceed parallel.max_parallel_limit "
                    f"({flat['parallel.max_parallel_limit']}), got {flat['parallel.max_workers']}"))
    default = flat["default_backend"]
    enabled_key = f"backends.{default}.enabled"
    if not flat[enabled_key]:
        out.append(("default_backend", ("default_backend", enabled_key),
                    f"{default!r} is disabled ({enabled_key} is false)"))
    return out


def _build(flat: dict[str, Any], sources: dict[str, str], problems: list[_Problem], *,
           path: Path | None, lines: Mapping[str, int] | None = None) -> Config:
    """Turn a complete, individually validated flat mapping into a Config or raise."""
    lines = lines or {}
    failed = {p.key for p in problems}
    for key, involved, reason in _cross_checks(flat):
        if failed.intersection(involved):
            continue  # one of the inputs is already reported; its stored value is a default
        source = sources.get(key, "default")
        problems.append(_Problem(_origin_text(source, lines.get(key)), key, reason))
    if problems:
        _raise(problems)
    sections = {}
    for section, cls in _SECTION_CLASSES.items():
        sections[section] = cls(**{f.name: flat[f"{section}.{f.name}"]
                                   for f in dataclasses.fields(cls)})
    backends = {
        name: BackendConfig(**{f.name: flat[f"backends.{name}.{f.name}"]
                               for f in dataclasses.fields(BackendConfig)})
        for name in KNOWN_BACKENDS
    }
    return Config(default_backend=flat["default_backend"], backends=backends,
                  sources=dict(sources), path=path, **sections)


def _defaults() -> tuple[dict[str, Any], dict[str, str]]:
    flat = {key: (dict(s.default) if isinstance(s.default, dict) else s.default)
            for key, s in _SPECS.items()}
    return flat, {key: "default" for key in _SPECS}


# --------------------------------------------------------------------- paths


def clinvk_home(env: Mapping[str, str] | None = None) -> Path:
    """``$CLINVK_HOME`` or ``~/.clinvk``: config, sessions and state live here."""
    env = os.environ if env is None else env
    home = env.get("CLINVK_HOME", "").strip()
    return Path(home).expanduser() if home else Path.home() / ".clinvk"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``<clinvk home>/config.yaml``."""
    return clinvk_home(env) / "config.yaml"


def resolve_config_path(path: str | os.PathLike[str] | None = None,
                        env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The config file to use and whether it was asked for explicitly (then it must exist)."""
    env = os.environ if env is None else env
    if path is not None and str(path) != "":
        return Path(path).expanduser(), True
    from_env = env.get("CLINVK_CONFIG", "").strip()
    if from_env:
        return Path(from_env).expanduser(), True
    return default_config_path(env), False


# ------------------------------------------------------------------- YAML reading


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context else problem
    return ConfigError(f"invalid configuration: {where}: invalid YAML: {text}",
                       details=[{"origin": where, "key": "", "reason": f"invalid YAML: {text}"}])


def _compose(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """Parse YAML once, keeping the node tree (for line numbers) and the Python data."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    finally:
        loader.dispose()
    return node, data


def _mapping_items(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _walk_file(node: yaml.Node | None, data: Any, path: Path
               ) -> tuple[dict[str, Any], dict[str, int], list[_Problem]]:
    """Flatten a parsed file into dotted leaf keys; report structure problems with lines."""
    origin = f"file:{path}"
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    problems: list[_Problem] = []

    def where(line: int) -> str:
        return _origin_text(origin, line)

    if data is None:
        return values, lines, problems
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        problems.append(_Problem(where(1), "", "the top level must be a mapping of sections"))
        return values, lines, problems

    def visit(mapping_node: yaml.MappingNode, mapping: dict, prefix: str) -> None:
        seen: set[str] = set()
        for key_node, value_node in _mapping_items(mapping_node):
            line = key_node.start_mark.line + 1
            raw_key = key_node.value
            key = f"{prefix}.{raw_key}" if prefix else str(raw_key)
            if key_node.tag != "tag:yaml.org,2002:str":
                problems.append(_Problem(where(line), key, "keys must be strings", line))
                continue
            if raw_key in seen:
                problems.append(_Problem(where(line), key, "duplicate key", line))
                continue
            seen.add(raw_key)
            value = mapping[raw_key]
            is_section = (key in _SECTIONS or
                          (prefix == "backends" and raw_key in KNOWN_BACKENDS))
            if is_section:
                if value is None:  # "server:" with everything commented out
                    continue
                if not isinstance(value, dict) or not isinstance(value_node, yaml.MappingNode):
                    problems.append(_Problem(where(line), key,
                                             f"expected a mapping, got {_type_name(value)}", line))
                    continue
                visit(value_node, value, key)
                continue
            if key not in _SPECS:
                if prefix == "backends":
                    reason = (f"unknown backend (known: {', '.join(KNOWN_BACKENDS)})"
                              + _suggest(str(raw_key), KNOWN_BACKENDS))
                else:
                    reason = _unknown_key_reason(key)
                problems.append(_Problem(where(line), key, reason, line))
                continue
            values[key] = value
            lines[key] = line
            if _SPECS[key].kind == "map" and isinstance(value_node, yaml.MappingNode):
                names = [k.value for k, _ in _mapping_items(value_node)]
                dupes = {n for n in names if names.count(n) > 1}
                for name in sorted(dupes):
                    problems.append(_Problem(where(line), f"{key}.{name}", "duplicate key", line))

    visit(node, data, "")
    return values, lines, problems


# --------------------------------------------------------------------- loading


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"invalid configuration: {path}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"invalid configuration: {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"invalid configuration: {path}: cannot read: {exc.strerror}") from None


def _load_file_into(flat: dict[str, Any], sources: dict[str, str], problems: list[_Problem],
                    text: str, path: Path) -> dict[str, int]:
    node, data = _compose(text, path)
    values, lines, found = _walk_file(node, data, path)
    source = f"file:{path}"
    for key, value in values.items():
        spec = _SPECS[key]
        try:
            new = _coerce(spec, value)
        except _Invalid as exc:
            found.append(_Problem(_origin_text(source, lines[key]), key, str(exc), lines[key]))
            continue
        if spec.kind == "map":
            new = _merge_aliases(key, new)
        flat[key] = new
        sources[key] = source
    problems.extend(sorted(found, key=lambda p: p.line))
    return lines


def _load_env_into(flat: dict[str, Any], sources: dict[str, str], problems: list[_Problem],
                   env: Mapping[str, str]) -> None:
    # Legacy names first so the canonical CLINVK_<SECTION>_<KEY> name wins when both are set.
    for var, key in _LEGACY_ENV.items():
        if var in env and env_var_for(key) not in env:
            _apply(flat, sources, problems, key, env[var], f"env:{var}",
                   _origin_text(f"env:{var}"), from_text=True)
    for var in sorted(env):
        if var in _ENV_TO_KEY:
            _apply(flat, sources, problems, _ENV_TO_KEY[var], env[var], f"env:{var}",
                   _origin_text(f"env:{var}"), from_text=True)
        elif var in _MAP_ENV_VARS:
            problems.append(_Problem(_origin_text(f"env:{var}"), _MAP_ENV_VARS[var],
                                     "mappings cannot be set from the environment; "
                                     "use the config file or `clinvk config set`"))
        elif var.startswith(_RESERVED_ENV_PREFIXES):
            hint = _suggest(var, _ENV_TO_KEY)
            problems.append(_Problem(_origin_text(f"env:{var}"), "",
                                     "unknown configuration variable" + hint))


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration: defaults < file < environment.

    The file is ``path`` > ``$CLINVK_CONFIG`` > ``<clinvk home>/config.yaml``; only the last
    may be missing. Every problem found (file and environment) is reported in one
    :class:`ConfigError`; nothing falls back to a default silently.
    """
    env = os.environ if env is None else env
    file_path, explicit = resolve_config_path(path, env)
    flat, sources = _defaults()
    problems: list[_Problem] = []
    lines: dict[str, int] = {}
    read_path: Path | None = None
    if file_path.exists() or explicit:
        if not file_path.exists():
            via = "" if path else " (from CLINVK_CONFIG)"
            raise ConfigError(f"invalid configuration: {file_path}{via}: file not found",
                              details=[{"origin": str(file_path), "key": "",
                                        "reason": "file not found"}])
        lines = _load_file_into(flat, sources, problems, _read_text(file_path), file_path)
        read_path = file_path
    _load_env_into(flat, sources, problems, env)
    return _build(flat, sources, problems, path=read_path, lines=lines)


# ------------------------------------------------------------------ config set


def _inline_yaml(value: Any) -> str:
    """One-line YAML for a value, quoted whenever YAML would otherwise change its type."""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        value = list(value)
    dumped = yaml.safe_dump({"k": value}, default_flow_style=True, width=10**9,
                            allow_unicode=True).strip()
    return dumped[len("{k: "):-1]


def _find_node(root: yaml.Node | None, parts: list[str]
               ) -> tuple[list[tuple[yaml.Node, yaml.Node]], yaml.Node | None]:
    """Walk mapping nodes along ``parts``; return the (key, value) chain found and the rest."""
    chain: list[tuple[yaml.Node, yaml.Node]] = []
    node = root
    for part in parts:
        if not isinstance(node, yaml.MappingNode):
            break
        found = None
        for key_node, value_node in node.value:
            if key_node.value == part:
                found = (key_node, value_node)
        if found is None:
            break
        chain.append(found)
        node = found[1]
    return chain, node


def _after_node(text: str, node: yaml.Node) -> int:
    """Index of the start of the line after the last line holding ``node``'s content."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style \
            and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return end  # a block scalar already ends at the start of a line
    newline = text.find("\n", end)
    return len(text) if newline == -1 else newline + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _block_lines(missing: list[str], inline: str, indent: int) -> list[str]:
    lines = [f"{' ' * (indent + 2 * depth)}{part}:" for depth, part in enumerate(missing[:-1])]
    lines.append(f"{' ' * (indent + 2 * (len(missing) - 1))}{missing[-1]}: {inline}")
    return lines


def _insert(text: str, at: int, lines: list[str]) -> str:
    lead = "\n" if at > 0 and text[at - 1] != "\n" else ""
    return text[:at] + lead + "\n".join(lines) + "\n" + text[at:]


def _line_edit(text: str, root: yaml.Node | None, parts: list[str], value: Any) -> str | None:
    """Edit the file text in place so comments survive; None if only a rewrite will do."""
    chain, _ = _find_node(root, parts)
    inline = _inline_yaml(value)
    if len(chain) == len(parts):  # the key exists: replace its value
        key_node, node = chain[-1]
        on_key_line = node.start_mark.line == node.end_mark.line == key_node.start_mark.line
        if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value \
                and isinstance(value, tuple) and value:
            # Block list -> block list with the same indentation.
            first = node.value[0].start_mark
            dash_col = text.rfind("-", 0, first.index) - text.rfind("\n", 0, first.index) - 1
            start = text.rfind("\n", 0, first.index) + 1
            items = [" " * dash_col + "- " + _inline_yaml(item) for item in value]
            return text[:start] + "\n".join(items) + "\n" + text[_after_node(text, node):]
        flow_or_scalar = isinstance(node, yaml.ScalarNode) or bool(getattr(node, "flow_style",
                                                                           False))
        block_scalar = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
        if _is_null(node) and node.start_mark.index == node.end_mark.index:
            at = node.start_mark.index  # "key:" with nothing after the colon
            return text[:at] + " " + inline + text[at:]
        if block_scalar and node.start_mark.line == key_node.start_mark.line:
            # "key: |" + indented lines -> "key: <one-line value>"
            return text[:node.start_mark.index] + inline + "\n" + text[_after_node(text, node):]
        if on_key_line and flow_or_scalar and not block_scalar:
            start, end = node.start_mark.index, node.end_mark.index
            return text[:start] + inline + text[end:]
        return None
    # The key is missing: add it (and any missing parent sections) after the parent's last entry.
    missing = parts[len(chain):]
    if not chain and root is None:  # empty file, or comments only
        return _insert(text, len(text), _block_lines(missing, inline, 0))
    parent = chain[-1][1] if chain else root
    if isinstance(parent, yaml.MappingNode) and not parent.flow_style and parent.value:
        indent = parent.value[0][0].start_mark.column
        return _insert(text, _after_node(text, parent), _block_lines(missing, inline, indent))
    str_tag = "tag:yaml.org,2002:str"
    if isinstance(parent, yaml.MappingNode) and parent.flow_style and len(missing) == 1 \
            and _split_map_entry(".".join(parts)) \
            and parent.start_mark.line == parent.end_mark.line \
            and all(isinstance(v, yaml.ScalarNode) and k.tag == v.tag == str_tag
                    for k, v in parent.value):
        # "env: {A: b}" gains an entry: rewrite just that one-line mapping.
        merged = {k.value: v.value for k, v in parent.value} | {missing[0]: value}
        start, end = parent.start_mark.index, parent.end_mark.index
        return text[:start] + _inline_yaml(merged) + text[end:]
    if chain and _is_null(parent):  # "output:" with everything commented out
        key_node = chain[-1][0]
        text = text[:parent.start_mark.index] + text[parent.end_mark.index:]  # drop "null"/"~"
        at = text.find("\n", parent.start_mark.index)
        at = len(text) if at == -1 else at
        lines = _block_lines(missing, inline, key_node.start_mark.column + 2)
        return text[:at] + "\n" + "\n".join(lines) + text[at:]
    return None


def _rewrite(data: Any, parts: list[str], value: Any) -> str:
    data = data if isinstance(data, dict) else {}
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600  # backend env may hold secrets
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def set_config_value(path: str | os.PathLike[str], dotted_key: str, raw_value: str) -> None:
    """``clinvk config set``: parse, validate and write one key, keeping comments if possible.

    ``backends.<name>.env.NAME`` / ``.aliases.NAME`` set a single map entry. The resulting file
    is validated as a whole before it atomically replaces the old one.
    """
    path = Path(path).expanduser()
    origin = f"config set {dotted_key}"
    entry = _split_map_entry(dotted_key)
    spec = _SPECS.get(entry[0] if entry else dotted_key)
    if spec is None:
        _raise([_Problem(origin, dotted_key, _unknown_key_reason(dotted_key))])
    try:
        if entry:
            value: Any = raw_value
            _coerce(spec, {entry[1]: raw_value})
        else:
            value = _coerce(spec, _parse_text(spec, raw_value))
    except _Invalid as exc:
        _raise([_Problem(origin, dotted_key, str(exc))])
    parts = dotted_key.split(".")
    text = _read_text(path) if path.exists() else ""
    root, data = _compose(text, path)
    if data is not None and not isinstance(data, dict):
        _raise([_Problem(_origin_text(f"file:{path}", 1), "",
                         "the top level must be a mapping of sections")])
    new_text = _line_edit(text, root, parts, value)
    if new_text is None:
        new_text = _rewrite(data, parts, value)
    # Validate the file exactly as `load_config` would (environment ignored).
    flat, sources = _defaults()
    problems: list[_Problem] = []
    lines = _load_file_into(flat, sources, problems, new_text, path)
    _build(flat, sources, problems, path=path, lines=lines)
    _atomic_write(path, new_text)
