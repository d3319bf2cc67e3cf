"""What can be set: one frozen dataclass per config section, each field a key with its
default, its one-line meaning (``config keys``, docs/configuration.md) and its check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clinvk.core.backends import claude, codex, gemini
from clinvk.core.config.checks import (
    Check,
    absolute_path,
    alias_names,
    at_least,
    between,
    broker_url,
    cors_origin,
    each,
    env_var_names,
    gopass_path,
    host_name,
    ip_network,
    key_id,
    lower,
    non_empty,
    one_of,
    queue_word,
    storage_uri,
    store_url,
)
from clinvk.core.types import (
    ApprovalMode,
    BackendName,
    ExecutionMode,
    HostFallback,
    LogFormat,
    LogLevel,
    OutputFormat,
    SandboxMode,
    UnknownModelPolicy,
    values,
)
from clinvk.core.usage.budget_spec import check_budgets

KNOWN_BACKENDS: tuple[str, ...] = values(BackendName)
APPROVAL_MODES: tuple[str, ...] = values(ApprovalMode)
SANDBOX_MODES: tuple[str, ...] = values(SandboxMode)
OUTPUT_FORMATS: tuple[str, ...] = values(OutputFormat)
UNKNOWN_MODEL_POLICIES: tuple[str, ...] = values(UnknownModelPolicy)
LOG_FORMATS: tuple[str, ...] = values(LogFormat)
LOG_LEVELS: tuple[str, ...] = values(LogLevel)
EXECUTION_MODES: tuple[str, ...] = values(ExecutionMode)
HOST_FALLBACKS: tuple[str, ...] = values(HostFallback)

MIB = 1024 * 1024

#: Built-in model aliases per backend (each backend module owns its table);
#: ``backends.<name>.aliases`` is merged over these, so ``config show`` lists every alias in
#: effect. See docs/configuration.md.
BUILTIN_ALIASES: Mapping[str, Mapping[str, str]] = {
    BackendName.CLAUDE: claude.MODEL_ALIASES,
    BackendName.CODEX: codex.MODEL_ALIASES,
    BackendName.GEMINI: gemini.MODEL_ALIASES,
}

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

    host: str = _key("127.0.0.1", "Address to bind.", check=host_name)
    port: int = _key(8080, "TCP port to bind (0 = any free port).", check=between(0, 65535))
    request_timeout_secs: int = _key(
        300, "Total time one backend run may take; the process group is killed after it.",
        check=at_least(1))
    read_timeout_secs: int = _key(30, "Time allowed to read a request (0 = no limit).",
                                  check=at_least(0))
    write_timeout_secs: int = _key(300, "Time allowed to write a response (0 = no limit).",
                                   check=at_least(0))
    idle_timeout_secs: int = _key(120, "Keep-alive idle time of a client connection.",
                                  check=at_least(0))
    backend_idle_timeout_secs: int = _key(
        0, "Kill a backend that prints nothing for this long (0 = off).", check=at_least(0))
    backend_nice: int = _key(
        0, "Niceness added to backend CLI processes (0-19), so the server keeps its CPU "
           "share when they saturate the cores (0 = same priority).", check=between(0, 19))
    rate_limit_enabled: bool = _key(False, "Enable rate limiting per API key, else per client IP.")
    rate_limit_rps: int = _key(10, "Sustained requests per second per client.",
                               check=at_least(0))
    rate_limit_burst: int = _key(20, "Requests a client may make at once above the rate.",
                                 check=at_least(0))
    rate_limit_cleanup_secs: int = _key(
        180, "How long idle per-client limiter state is kept (Go-compatible key).",
        check=at_least(1))
    rate_limit_storage_uri: str = _key(
        "memory://", "Limiter storage shared by workers, e.g. redis://host:6379.",
        check=storage_uri)
    trusted_proxies: tuple[str, ...] = _key(
        (), "Proxy IPs/CIDRs whose X-Forwarded-For is believed.", check=each(ip_network))
    max_request_body_bytes: int = _key(10 * MIB, "Larger request bodies get 413 (0 = no limit).",
                                       check=at_least(0))
    cors_allowed_origins: tuple[str, ...] = _key(
        (), "Allowed CORS origins; empty = http(s) localhost/127.0.0.1 on any port.",
        check=each(cors_origin))
    cors_allow_credentials: bool = _key(False, "Send Access-Control-Allow-Credentials.")
    cors_max_age: int = _key(300, "Seconds a browser may cache a preflight answer.",
                             check=at_least(0))
    allowed_workdir_prefixes: tuple[str, ...] = _key(
        (), "If set, a request workdir must resolve under one of these.", check=each(absolute_path))
    blocked_workdir_prefixes: tuple[str, ...] = _key(
        (), "Extra blocked workdir prefixes, added to the built-in list.",
        check=each(absolute_path))
    allow_system_root_workdirs: bool = _key(
        False, "Allow a system root itself (/, /usr, /var, /home, /tmp, ...) as a workdir.")
    unknown_model: str = _key(
        "auto", "OpenAI/Anthropic model naming no backend or alias: default_backend runs it on "
        "the default backend with the name passed through, error answers 404, auto = "
        "default_backend when response_envelope is false (the Go behaviour), else error.",
        check=one_of(UNKNOWN_MODEL_POLICIES), norm=lower)
    max_json_depth: int = _key(64, "Deepest nesting of arrays and objects in a JSON body.",
                               check=between(2, 10_000))
    metrics_enabled: bool = _key(False, "Serve Prometheus metrics at /metrics.")
    access_log: bool = _key(True, "One log line per request on stderr (gunicorn's access log).")
    metrics_require_auth: bool = _key(False, "Require an API key for /metrics.")
    api_keys_gopass_path: str = _key(
        "", "gopass entry holding comma-separated API keys (used when CLINVK_API_KEYS is unset).",
        check=gopass_path)
    admin_key_ids: tuple[str, ...] = _key(
        (), "Key ids (`clinvk keys id`) whose callers see every key's sessions, jobs and usage.",
        check=each(key_id))
    budgets: dict[str, str] = _key(
        {}, "Usage budgets per key id (or 'default'), e.g. {default: 'runs 30/minute; "
        "tokens 2000000/day; cost_usd 5/day'}; a key past one gets 429 (docs/usage.md).",
        check=check_budgets)
    allow_unauthenticated_remote: bool = _key(
        False, "Allow binding a non-loopback address with no API keys configured.")
    allow_dangerous_modes: bool = _key(
        False, "Allow approval_mode none, sandbox_mode full and permission-bypassing flags.")
    response_envelope: bool = _key(
        True, "Wrap /api/v1 bodies in {success, data}; false = bare Go-compatible bodies.")
    max_concurrent_runs: int = _key(16, "Backend runs at once per server process.",
                                    check=at_least(1))
    queue_timeout_secs: int = _key(30, "How long a run waits for a slot before 503.",
                                   check=at_least(0))
    max_output_bytes: int = _key(16 * MIB, "Cap on captured output of one run.",
                                 check=at_least(1024))
    max_line_bytes: int = _key(8 * MIB, "Cap on one stream line from a backend.",
                               check=at_least(1024))
    max_parallel_tasks: int = _key(32, "Most tasks in one parallel request.", check=at_least(1))
    max_chain_steps: int = _key(32, "Most steps in one chain request.", check=at_least(1))
    max_compare_backends: int = _key(8, "Most backends in one compare request.",
                                     check=at_least(1))
    stream_keepalive_secs: int = _key(15, "Keep-alive comment/ping interval on silent streams "
                                          "(0 = off).", check=at_least(0))
    jobs_max_queued: int = _key(100, "Jobs waiting to start across the server; more get 429 "
                                     "(0 = no limit).", check=at_least(0))
    jobs_max_events: int = _key(10_000, "Events kept per job; older ones are dropped and a "
                                        "marker event says so (0 = no cap).", check=at_least(0))
    jobs_retention_secs: int = _key(7 * 24 * 3600, "Finished jobs older than this are deleted "
                                                   "at start.", check=at_least(60))
    jobs_retention_count: int = _key(1000, "Finished jobs kept at most (newest first), "
                                           "pruned at start.", check=at_least(1))
    jobs_claim_timeout_secs: int = _key(
        30, "A job's claim by the gateway process dispatching or running it lasts this long "
        "unless renewed (every third of it); a gateway on another machine takes over a queued "
        "job, or marks a running one lost, only once the claim has expired.", check=at_least(3))
    jobs_threads: int = _key(8, "Threads per server process that run jobs (embedded executor).",
                             check=at_least(1))
    jobs_webhook_allowed_hosts: tuple[str, ...] = _key(
        (), "Host names a job's callback_url may name (exact, any port); empty = webhooks off, "
        "nothing is ever called.", check=each(host_name))
    jobs_webhook_secret: str = _key(
        "", "HMAC-SHA256 key signing every webhook (X-Clinvk-Signature); needed for webhooks. "
        "Masked in config show, never logged; prefer CLINVK_SERVER_JOBS_WEBHOOK_SECRET.")
    jobs_webhook_attempts: int = _key(5, "Webhook attempts per finished job (first + retries).",
                                      check=at_least(1))
    jobs_webhook_backoff_secs: int = _key(
        2, "Wait before the first webhook retry; it doubles for each later one (0 = retry "
        "at once).", check=at_least(0))
    jobs_webhook_timeout_secs: int = _key(10, "Bound on one webhook attempt (connect, send, "
                                              "answer).", check=at_least(1))
    jobs_webhook_threads: int = _key(2, "Threads per server process delivering webhooks "
                                        "(apart from the job threads).", check=at_least(1))
    workers: int = _key(1, "gunicorn worker processes.", check=at_least(1))
    threads: int = _key(32, "Threads per gunicorn worker (gthread).", check=at_least(1))
    log_format: str = _key("text", "Log line format.", check=one_of(LOG_FORMATS), norm=lower)
    log_level: str = _key("info", "Minimum log level.", check=one_of(LOG_LEVELS), norm=lower)
    graceful_timeout_secs: int = _key(30, "Time running requests get to finish on shutdown.",
                                      check=at_least(0))


@dataclass(frozen=True)
class BackendConfig:
    """``backends.<name>.*``: how one CLI is found, started and defaulted."""

    command: str = _key("", "Binary name or path (default: the backend name on PATH).",
                        check=non_empty)
    model: str = _key("", "Default model ('' = the CLI's own default).")
    env: dict[str, str] = _key({}, "Extra environment for the child process.", check=env_var_names)
    aliases: dict[str, str] = _key(
        {}, "Model aliases, merged over the built-in fast/balanced/best ones.",
        check=alias_names)
    allowed_tools: str = _key("", "Claude --allowedTools value (ignored by other backends).")
    approval_mode: str = _key("", "Approval mode for this backend, overriding unified_flags.",
                              check=one_of(APPROVAL_MODES, allow_empty=True), norm=lower)
    sandbox_mode: str = _key("", "Sandbox mode for this backend, overriding unified_flags.",
                             check=one_of(SANDBOX_MODES, allow_empty=True), norm=lower)
    extra_flags: tuple[str, ...] = _key((), "Flags appended to every run of this backend.",
                                        check=each(non_empty))
    enabled: bool = _key(True, "false = the backend is refused everywhere.")
    system_prompt: str = _key("", "System prompt used when a request gives none.")
    timeout_secs: int = _key(0, "Run timeout for this backend (0 = server/CLI default).",
                             check=at_least(0))


@dataclass(frozen=True)
class UnifiedFlagsConfig:
    """``unified_flags.*``: defaults for the backend-neutral run options."""

    approval_mode: str = _key("default", "Default approval mode.",
                              check=one_of(APPROVAL_MODES), norm=lower)
    sandbox_mode: str = _key("default", "Default sandbox mode.",
                             check=one_of(SANDBOX_MODES), norm=lower)
    verbose: bool = _key(False, "Ask backends for verbose output.")
    dry_run: bool = _key(False, "Make every run a dry run (prints the argv, starts nothing).")
    max_turns: int = _key(0, "Agent turn limit (0 = backend default).", check=at_least(0))
    max_tokens: int = _key(0, "Token limit (0 = backend default; no current CLI has a flag).",
                           check=at_least(0))
    command_timeout_secs: int = _key(0, "CLI run timeout (0 = none; --timeout wins).",
                                     check=at_least(0))


@dataclass(frozen=True)
class SessionConfig:
    """``session.*``: the session store."""

    auto_resume: bool = _key(False, "Plain `clinvk PROMPT` continues the last session.")
    retention_days: int = _key(30, "`sessions clean` removes sessions unused this long (0 = keep).",
                               check=at_least(0))
    default_tags: tuple[str, ...] = _key((), "Tags added to every new session.",
                                         check=each(non_empty))
    store_token_usage: bool = _key(True, "Accumulate token usage in the session record.")
    usage_retention_days: int = _key(90, "Usage ledger rows older than this are deleted "
                                         "(0 = keep forever).", check=at_least(0))
    lease_timeout_secs: int = _key(30, "A running turn's session lease is renewed every third "
                                   "of this; one not renewed this long is free for any "
                                   "gateway.", check=between(3, 86_400))


@dataclass(frozen=True)
class OutputConfig:
    """``output.*``: how the CLI prints results."""

    format: str = _key("text", "Default CLI output format.", check=one_of(OUTPUT_FORMATS),
                       norm=lower)
    show_tokens: bool = _key(False, "Print token usage after a text result.")
    show_timing: bool = _key(False, "Print the duration after a text result.")
    color: bool = _key(True, "Colour terminal output.")


@dataclass(frozen=True)
class ParallelConfig:
    """``parallel.*``: fan-out defaults."""

    max_workers: int = _key(3, "Default concurrent tasks of a parallel run.", check=at_least(1))
    max_parallel_limit: int = _key(16, "Upper bound a request's max_parallel is capped to.",
                                   check=at_least(1))
    fail_fast: bool = _key(False, "Default: cancel the other tasks on the first failure.")
    aggregate_output: bool = _key(True, "CLI prints one combined result instead of per task.")


@dataclass(frozen=True)
class ExecutionConfig:
    """``execution.*``: where backend CLIs run (docs/deployment.md).

    The gateway keys (mode, broker, timing, fallback) must agree across gateways and agent
    hosts; ``host``, ``backends`` and ``concurrency`` describe one agent host
    (``clinvk worker``)."""

    mode: str = _key("embedded", "embedded = CLIs run inside the serving process; celery = on "
                     "agent hosts (`clinvk worker`) through the Redis broker.",
                     check=one_of(EXECUTION_MODES), norm=lower)
    broker_url: str = _key("", "Redis URL of the Celery broker, also carrying the live run "
                           "events and host heartbeats (required for mode celery).",
                           check=broker_url)
    queue_prefix: str = _key("clinvk", "First word of every queue and Redis key, so several "
                             "deployments can share one Redis.", check=queue_word)
    heartbeat_secs: int = _key(1, "How often an agent host and each of its runs report they "
                               "are alive.", check=between(1, 60))
    lost_after_secs: int = _key(10, "Silence after which a host counts as gone and its runs "
                                "as lost (jobs end `lost`).", check=between(2, 3600))
    host_fallback: str = _key("fail", "A resume whose host is gone: fail = 503 at once; "
                              "new_session = start a new backend session on another host "
                              "and say so.", check=one_of(HOST_FALLBACKS), norm=lower)
    host: str = _key("", "This agent host's name ('' = the machine's host name).",
                     check=queue_word)
    backends: tuple[str, ...] = _key((), "Backends this agent host serves (empty = every "
                                     "enabled backend whose CLI is installed).",
                                     check=each(one_of(KNOWN_BACKENDS)))
    concurrency: int = _key(4, "CLI runs at once on this agent host.", check=between(1, 256))


@dataclass(frozen=True)
class StoreConfig:
    """``store.*``: where sessions, jobs and stored responses live (docs/deployment.md)."""

    url: str = _key("", "Where the store lives: '' = the SQLite file in the clinvk home, an "
                    "absolute path or sqlite:///path = that SQLite file, postgresql://… = a "
                    "shared PostgreSQL database (needs the postgres extra).", check=store_url)
    pool_min_size: int = _key(1, "PostgreSQL: connections each process keeps open.",
                              check=between(0, 100))
    pool_max_size: int = _key(10, "PostgreSQL: most connections one process opens (size it to "
                              "the server threads; see docs/deployment.md).",
                              check=between(1, 1000))
    pool_timeout_secs: int = _key(10, "PostgreSQL: how long a request waits for a free "
                                  "connection before it fails with store_unavailable (503).",
                                  check=between(1, 600))
    connect_timeout_secs: int = _key(5, "PostgreSQL: how long opening one connection may take.",
                                     check=between(1, 120))


def _default_backend_config(name: str) -> BackendConfig:
    return BackendConfig(command=name, aliases=dict(BUILTIN_ALIASES[name]))


def default_backends() -> dict[str, BackendConfig]:
    return {name: _default_backend_config(name) for name in KNOWN_BACKENDS}


SECTION_CLASSES: dict[str, type] = {
    "server": ServerConfig,
    "unified_flags": UnifiedFlagsConfig,
    "session": SessionConfig,
    "output": OutputConfig,
    "parallel": ParallelConfig,
    "execution": ExecutionConfig,
    "store": StoreConfig,
}


#: Top-level mappings of the file (everything else at the top is a plain key).
SECTIONS = ("server", "backends", "unified_flags", "session", "output", "parallel",
            "execution", "store")
