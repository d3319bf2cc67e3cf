"""The engine's vocabularies: each concept's allowed values, defined once.

Every enum is a :class:`enum.StrEnum`, so a member compares equal to its string and goes
into JSON, YAML and argv unchanged. The tuples other modules validate against
(``APPROVAL_MODES`` and the like) are derived from these with :func:`values`.
"""

from __future__ import annotations

from enum import StrEnum


class BackendName(StrEnum):
    """The agent CLIs clinvk can run."""

    CLAUDE = "claude"
    CODEX = "codex"
    GEMINI = "gemini"


class ApprovalMode(StrEnum):
    """How much the agent may do without asking (translated per backend)."""

    DEFAULT = "default"
    AUTO = "auto"
    NONE = "none"
    ALWAYS = "always"


class SandboxMode(StrEnum):
    """What the agent may touch on disk (translated per backend)."""

    DEFAULT = "default"
    READ_ONLY = "read-only"
    WORKSPACE = "workspace"
    FULL = "full"


class OutputFormat(StrEnum):
    """How the CLI prints a result."""

    TEXT = "text"
    JSON = "json"
    STREAM_JSON = "stream-json"


class RunStatus(StrEnum):
    """How one backend run ended, as results, events and the edges report it."""

    OK = "ok"
    FAILED = "failed"  # the CLI failed, reported an error, or broke an output limit
    TIMEOUT = "timeout"  # the run's timeout or the idle watchdog stopped it
    CANCELLED = "cancelled"  # a caller, a signal or a vanished client stopped it


class EndReason(StrEnum):
    """Why a backend process ended (a :class:`~clinvk.core.process.ProcessRun` or a remote run)."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    OUTPUT_LIMIT = "output_limit"
    LINE_LIMIT = "line_limit"
    LOST = "lost"  # a remote run whose agent host stopped answering (docs/deployment.md)


class TaskState(StrEnum):
    """A parallel/chain/compare task's state beside its run's :class:`RunStatus`."""

    PENDING = "pending"  # not started yet (live progress only)
    RUNNING = "running"  # its run is under way (live progress only)
    SKIPPED = "skipped"  # a final status: never run, because an earlier chain step failed


class RunMiss(StrEnum):
    """The runs metric's outcome for a run that never reached a :class:`RunStatus`."""

    UNAVAILABLE = "unavailable"  # the backend CLI could not be started
    NOT_STARTED = "not_started"  # a remote run no agent host took


class SessionStatus(StrEnum):
    """Where a stored session stands."""

    ACTIVE = "active"  # a turn is running, or the session waits for the next one
    COMPLETED = "completed"  # its last turn ended well (or was a dry run)
    ERROR = "error"  # its last turn failed
    PAUSED = "paused"  # set by a caller through the update API; clinvk never sets it


class HealthStatus(StrEnum):
    """The gateway's overall state as ``/health`` reports it."""

    OK = "ok"
    DEGRADED = "degraded"  # serving, but no backend installed or broker/store unreachable
    UNHEALTHY = "unhealthy"  # the session store is unusable here (corrupt, too new: 503)


class BrokerState(StrEnum):
    """Whether the Celery broker answers (``execution.broker`` in ``/health``)."""

    OK = "ok"
    UNREACHABLE = "unreachable"


class UnknownModelPolicy(StrEnum):
    """What a vendor-dialect request naming no known model or alias gets."""

    AUTO = "auto"
    DEFAULT_BACKEND = "default_backend"
    ERROR = "error"


class LogFormat(StrEnum):
    """Shape of a log line."""

    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    """Minimum level a log line needs to be written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ExecutionMode(StrEnum):
    """Where backend CLIs run: inside the serving process, or on Celery agent hosts."""

    EMBEDDED = "embedded"
    CELERY = "celery"


class HostFallback(StrEnum):
    """What a resume gets when the agent host holding its backend session is gone."""

    FAIL = "fail"  # a fast 503 naming the host
    NEW_SESSION = "new_session"  # start a new backend session on another host, and say so


class RunEntryKind(StrEnum):
    """What one entry of a remote run's event stream carries (clinvk.core.remote.channel)."""

    START = "start"  # a host took the run and its CLI is running: host, pid
    REFUSED = "refused"  # the host could not start the CLI: message
    LINE = "line"  # one line the CLI printed on stdout
    BEAT = "beat"  # the run is alive but silent
    END = "end"  # the CLI is gone: the outcome (exit code, reason, stderr tail)


class StoreDialect(StrEnum):
    """The SQL dialect a store speaks; each has its own directory of numbered migrations."""

    SQLITE = "sqlite"  # the embedded store: one file beside the CLI and every worker
    POSTGRESQL = "postgresql"  # a shared server for several hosts


class RunOrigin(StrEnum):
    """Which edge asked for a run (the ledger's ``origin`` column)."""

    API = "api"
    OPENAI = "openai"
    OPENAI_RESPONSES = "openai.responses"
    ANTHROPIC = "anthropic"
    CLI = "cli"
    MCP = "mcp"
    JOB = "job"


class JobKind(StrEnum):
    """What a job runs: one prompt, or one of the orchestration routes' plans."""

    PROMPT = "prompt"
    PARALLEL = "parallel"
    CHAIN = "chain"
    COMPARE = "compare"


class JobStatus(StrEnum):
    """Where a job stands; a job's run ends in a :class:`RunStatus`, the job in one of these."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the server running it died; never re-run (agents have side effects)

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class WebhookState(StrEnum):
    """Where a job's webhook delivery stands (the job's ``webhook.state``)."""

    PENDING = "pending"  # the job has not finished, or a retry is due
    DELIVERED = "delivered"  # a receiver answered 2xx
    FAILED = "failed"  # every attempt was spent


class BudgetMetric(StrEnum):
    """What a budget counts per key and window."""

    RUNS = "runs"
    TOKENS = "tokens"
    COST_USD = "cost_usd"


class UsageGroup(StrEnum):
    """What usage can be grouped by (``group_by`` of the usage query)."""

    KEY = "key"
    BACKEND = "backend"
    MODEL = "model"
    DAY = "day"
    HOUR = "hour"
    ORIGIN = "origin"
    STATUS = "status"


def values(vocabulary: type[StrEnum]) -> tuple[str, ...]:
    """The plain string values of a vocabulary, in declaration order."""
    return tuple(member.value for member in vocabulary)
