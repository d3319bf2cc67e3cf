"""Turn a caller's request into a run that can start, or refuse it before anything exists.

Every check that can fail on the caller's input runs here, before a slot, a lease, a
session row or a process is taken: the edges map the :class:`~clinvk.core.errors.ClinvkError`
raised to a 4xx or an exit code. The order of the checks is the order a caller sees
problems in (the first one wins).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from clinvk.core import policy
from clinvk.core.backends import Backend, RunOptions
from clinvk.core.backends.base import APPROVAL_MODES, SANDBOX_MODES
from clinvk.core.engine.requests import TEXT_FIELDS, PreparedRun, PromptRequest
from clinvk.core.errors import InvalidRequest, PolicyViolation, StoreError
from clinvk.core.textcheck import check_text
from clinvk.core.types import BackendName

if TYPE_CHECKING:
    from clinvk.core.config import Config
    from clinvk.core.config.schema import BackendConfig, ServerConfig
    from clinvk.core.engine.base import Engine
    from clinvk.core.store import Session


def prepare_run(engine: Engine, req: PromptRequest) -> PreparedRun:
    """Resolve and validate everything; raise before any process or record exists."""
    config = engine.config
    req = _checked_request(config, req)
    session = _continued_session(engine, req)
    backend = engine.registry.get(session.backend if session else
                                  req.backend or config.default_backend)
    bcfg = config.backends.get(backend.name)
    flags = config.unified_flags
    approval = _choice(req.approval_mode, bcfg and bcfg.approval_mode, flags.approval_mode,
                       APPROVAL_MODES, "approval_mode")
    sandbox = _choice(req.sandbox_mode, bcfg and bcfg.sandbox_mode, flags.sandbox_mode,
                      SANDBOX_MODES, "sandbox_mode")
    max_turns = req.max_turns if req.max_turns is not None else (flags.max_turns or None)
    if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 0):
        raise InvalidRequest("max_turns must be a non-negative integer", field="max_turns")
    extra = list(req.extra_flags or [])
    if not all(isinstance(x, str) for x in extra):
        raise InvalidRequest("extra must be a list of strings", field="extra")
    placement = None if req.dry_run else engine.runner.place(backend, session)
    workdir = _workdir(req, session)
    if engine.server_mode:
        _enforce_server_policy(config.server, backend, workdir, approval, sandbox, extra)
    extra = _configured_flags(backend, bcfg) + extra

    model = req.model or (session.model if session else None) or None
    ephemeral = bool(req.ephemeral)
    if session is not None and ephemeral:
        raise InvalidRequest("ephemeral cannot be combined with session_id", field="ephemeral")
    opts = RunOptions(
        prompt=req.prompt,
        workdir=workdir,
        model=model,
        approval_mode=approval,
        sandbox_mode=sandbox,
        max_turns=max_turns or None,
        system_prompt=req.system_prompt or (bcfg.system_prompt if bcfg else "") or None,
        verbose=bool(req.verbose or flags.verbose),
        ephemeral=ephemeral,
        extra_flags=extra,
        resume_id=(session.backend_session_id
                   if session and (placement is None or placement.resume) else None),
    )
    invocation = backend.build_invocation(opts)
    invocation.env = backend.child_env()
    return PreparedRun(request=req, backend=backend, model=model,
                       resolved_model=backend.resolve_model(model), workdir=workdir,
                       invocation=invocation, session=session, ephemeral=ephemeral,
                       timeout=_timeout(engine, req, bcfg), placement=placement)


def _checked_request(config: Config, req: PromptRequest) -> PromptRequest:
    """The prompt is there, every text can reach a CLI, and the operator's dry run holds."""
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise InvalidRequest("prompt is required and must not be empty", field="prompt")
    for name in TEXT_FIELDS:
        value = getattr(req, name)
        if value is not None:
            check_text(value, "extra" if name == "extra_flags" else name)
    if config.unified_flags.dry_run and not req.dry_run:
        req = replace(req, dry_run=True)  # the operator made every run a dry run
    return req


def _continued_session(engine: Engine, req: PromptRequest) -> Session | None:
    """The session a request continues (visible to its caller, on the same backend)."""
    if not req.session_id:
        return None
    if engine.store is None:
        raise StoreError("no session store is configured")
    session = engine.store.get(req.session_id, visible_to=req.principal)
    if req.backend and req.backend.strip().lower() != session.backend:
        raise InvalidRequest(
            f"session {session.id} belongs to backend {session.backend!r}, "
            f"not {req.backend!r}", field="backend")
    return session


def _choice(requested: str | None, backend_default: str | None, unified: str,
            choices: tuple[str, ...], field_name: str) -> str:
    """A mode from the request, else the backend's configured one, else the unified one."""
    value = requested or (backend_default if backend_default not in (None, "", "default")
                          else None) or unified or "default"
    if value not in choices:
        raise InvalidRequest(
            f"{field_name} must be one of {', '.join(choices)}; got {value!r}",
            field=field_name)
    return value


def _workdir(req: PromptRequest, session: Session | None) -> str:
    """The resolved directory the CLI runs in; a continued session keeps its own."""
    if session is None:
        return policy.resolve_workdir(req.workdir)
    if req.workdir and policy.resolve_workdir(req.workdir) != session.working_dir:
        raise InvalidRequest(
            "workdir cannot change when continuing a session "
            f"(it runs in {session.working_dir})", field="workdir")
    return session.working_dir


def _enforce_server_policy(srv: ServerConfig, backend: Backend, workdir: str, approval: str,
                           sandbox: str, extra: list[str]) -> None:
    """What a server refuses that the CLI allows: the workdir policy and the privilege
    ceiling, including flags that would raise privileges behind the modes' back."""
    policy.check_workdir(workdir, allowed=srv.allowed_workdir_prefixes,
                         blocked=srv.blocked_workdir_prefixes,
                         allow_system_roots=srv.allow_system_root_workdirs)
    policy.check_privilege(approval, sandbox, allow_dangerous=srv.allow_dangerous_modes)
    reason = backend.check_extra_flags(extra, allow_dangerous=srv.allow_dangerous_modes)
    if reason:
        raise PolicyViolation(reason, field="extra")


def _configured_flags(backend: Backend, bcfg: BackendConfig | None) -> list[str]:
    """The flags the operator configured for a backend; they go before the caller's."""
    if bcfg is None:
        return []
    flags = list(bcfg.extra_flags)
    if bcfg.allowed_tools and backend.name == BackendName.CLAUDE:
        flags = ["--allowedTools", bcfg.allowed_tools, *flags]
    return flags


def _timeout(engine: Engine, req: PromptRequest, bcfg: BackendConfig | None) -> float | None:
    """The run's timeout: the request's (capped by a server's maximum), else the defaults."""
    requested = req.timeout_secs
    if requested is not None and (not isinstance(requested, int | float) or requested <= 0):
        raise InvalidRequest("timeout_secs must be a positive number", field="timeout_secs")
    backend_default = (bcfg.timeout_secs if bcfg else 0) or None
    if engine.server_mode:
        ceiling = engine.config.server.request_timeout_secs or None
        if requested and ceiling and requested > ceiling:
            raise InvalidRequest(
                f"timeout_secs must not exceed the server maximum of {ceiling} s",
                field="timeout_secs")
        return requested or backend_default or ceiling
    return requested or backend_default or (
        engine.config.unified_flags.command_timeout_secs or None)
