"""A native request body (already validated by its schema) as an engine request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clinvk.core.engine import PromptRequest
from clinvk.core.types import RunOrigin
from clinvk.server.security import identify


def prompt_request(args: Mapping[str, Any], **overrides: Any) -> PromptRequest:
    """A request body (already validated by its schema) as an engine request."""
    fields = dict(
        prompt=args["prompt"],
        backend=args.get("backend"),
        model=args.get("model"),
        workdir=args.get("workdir"),
        session_id=args.get("session_id"),
        ephemeral=bool(args.get("ephemeral")),
        approval_mode=args.get("approval_mode"),
        sandbox_mode=args.get("sandbox_mode"),
        max_turns=args.get("max_turns"),
        max_tokens=args.get("max_tokens"),
        system_prompt=args.get("system_prompt"),
        verbose=bool(args.get("verbose")),
        dry_run=bool(args.get("dry_run")),
        extra_flags=list(args.get("extra") or []),
        metadata=args.get("metadata"),
        timeout_secs=args.get("timeout_secs"),
        principal=identify().principal,
        origin=RunOrigin.API,
    )
    fields.update(overrides)
    return PromptRequest(**fields)
