"""What a store checks before it writes, independent of the database: a new session's
record, the columns an ``update()`` sets, a cleanup age. Implementations call these so
every store refuses the same input with the same ``InvalidRequest``."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable
from typing import Any

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import TokenUsage, utc_timestamp
from clinvk.core.store.checks import (
    ID_RE,
    check_optional_str,
    check_status,
    check_tags,
    check_usage,
    dump_metadata,
)
from clinvk.core.store.records import UPDATABLE_FIELDS, FirstTurn, Session, derive_title

__all__ = ["check_age", "new_session", "update_columns"]


def new_session(
    now: float, *, backend: str, working_dir: str, model: str | None,
    initial_prompt: str, tags: Iterable[str], metadata: dict[str, Any] | None,
    parent_id: str | None, status: str, backend_session_id: str | None, owner: str | None,
    first_turn: FirstTurn | None = None,
) -> Session:
    """The record of a session created at ``now``, every field checked; with
    ``first_turn``, under that turn's session id and with the turn counted."""
    if not isinstance(backend, str) or not backend.strip():
        raise InvalidRequest("backend must be a non-empty string", field="backend")
    if not isinstance(working_dir, str) or not os.path.isabs(working_dir):
        raise InvalidRequest(
            f"working_dir must be an absolute path, got {working_dir!r}", field="working_dir")
    if not isinstance(initial_prompt, str):
        raise InvalidRequest("initial_prompt must be a string", field="initial_prompt")
    if parent_id is not None and (
            not isinstance(parent_id, str) or not ID_RE.fullmatch(parent_id)):
        raise InvalidRequest("parent_id must be a full 32-character session id",
                             field="parent_id")
    tag_list = check_tags(tags)
    meta_json = dump_metadata(metadata)
    turn = first_turn or FirstTurn(uuid.uuid4().hex)
    if not isinstance(turn, FirstTurn) or not isinstance(turn.session_id, str) \
            or not ID_RE.fullmatch(turn.session_id):
        raise InvalidRequest("first_turn needs a full 32-character session id",
                             field="first_turn")
    return Session(
        id=turn.session_id, backend=backend.strip(),
        backend_session_id=check_optional_str(backend_session_id, "backend_session_id"),
        created_at=utc_timestamp(now), last_used=utc_timestamp(now),
        working_dir=working_dir, model=check_optional_str(model, "model"),
        initial_prompt=initial_prompt, title=derive_title(initial_prompt),
        status=check_status(status), turn_count=0 if first_turn is None else 1,
        token_usage=check_usage(turn.usage) or TokenUsage(),
        tags=tag_list, metadata=json.loads(meta_json),
        error_message=check_optional_str(turn.error_message, "error_message"),
        parent_id=parent_id, owner=check_optional_str(owner, "owner"))


def update_columns(fields: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """The column values an ``update(**fields)`` writes, and the new tag list if any."""
    unknown = sorted(set(fields) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"cannot update {', '.join(unknown)}: updatable fields are "
            f"{', '.join(sorted(UPDATABLE_FIELDS))}", field=unknown[0])
    columns: dict[str, Any] = {}
    tag_list: list[str] | None = None
    if "status" in fields:
        columns["status"] = check_status(fields["status"])
    if "tags" in fields:
        tag_list = check_tags(fields["tags"])
        columns["tags"] = json.dumps(tag_list, ensure_ascii=False)
    if "metadata" in fields:
        columns["metadata"] = dump_metadata(fields["metadata"])
    if "title" in fields:
        title = "" if fields["title"] is None else fields["title"]
        if not isinstance(title, str):
            raise InvalidRequest("title must be a string", field="title")
        title = " ".join(title.split())
        if len(title) > 200:
            raise InvalidRequest("title must be at most 200 characters", field="title")
        columns["title"] = title
    if "error_message" in fields:
        columns["error_message"] = check_optional_str(fields["error_message"], "error_message")
    return columns, tag_list


def check_age(age: Any) -> float:
    """A cleanup age in seconds: > 0 ("0 days" must never mean "delete everything")."""
    if isinstance(age, bool) or not isinstance(age, int | float) or not (
            math.isfinite(age) and age > 0):
        raise InvalidRequest(f"older_than_seconds must be a positive number, got {age!r}",
                             field="older_than_seconds")
    return float(age)
