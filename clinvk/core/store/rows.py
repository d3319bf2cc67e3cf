"""Session rows as every store implementation keeps them: the column order and the
conversions between a row (a tuple in that order) and a :class:`Session`.

Timestamps are epoch seconds in the row and millisecond UTC strings in the record; tags
and metadata are JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

from clinvk.core.events import TokenUsage, utc_timestamp
from clinvk.core.store.checks import dump_metadata, epoch
from clinvk.core.store.records import Session

__all__ = ["COLUMNS", "row_to_record", "row_to_session", "session_to_row"]

COLUMNS = (
    "id",
    "backend",
    "backend_session_id",
    "created_at",
    "last_used",
    "working_dir",
    "model",
    "initial_prompt",
    "title",
    "status",
    "turn_count",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "tags",
    "metadata",
    "error_message",
    "parent_id",
    "owner",
)

# A run of 19 digits may be an integer beyond 64 bits, which orjson reads as a float
# (2**70 + 1 would come back as 1.1805916207174113e+21): such text goes to the stdlib.
_LONG_NUMBER = re.compile(r"\d{19}")


def load_json(text: str) -> Any:
    """A JSON column's value, exactly as written. orjson reads it; text with a number too
    long for orjson to keep exact (integers beyond 64 bits, which metadata may hold) and
    what orjson refuses go to the stdlib."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def row_to_record(row: Sequence[Any]) -> dict[str, Any]:
    """The JSON-ready record of a row, the same dict as ``row_to_session(row).to_dict()``
    built in one step: listings turn each row into the response's dict once."""
    (
        sid,
        backend,
        backend_session_id,
        created_at,
        last_used,
        working_dir,
        model,
        initial_prompt,
        title,
        status,
        turn_count,
        input_tokens,
        output_tokens,
        cached_tokens,
        reasoning_tokens,
        cost_usd,
        tags,
        metadata,
        error_message,
        parent_id,
        owner,
    ) = row
    return {
        "id": sid,
        "backend": backend,
        "backend_session_id": backend_session_id,
        "created_at": utc_timestamp(created_at),
        "last_used": utc_timestamp(last_used),
        "working_dir": working_dir,
        "model": model,
        "initial_prompt": initial_prompt,
        "title": title,
        "status": status,
        "turn_count": turn_count,
        "token_usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "reasoning_tokens": reasoning_tokens,
            "total_tokens": input_tokens + output_tokens,
            "cost_usd": cost_usd,
        },
        "tags": load_json(tags) if tags != "[]" else [],
        "metadata": load_json(metadata) if metadata != "{}" else {},
        "error_message": error_message,
        "parent_id": parent_id,
        "owner": owner,
    }


def row_to_session(row: Sequence[Any]) -> Session:
    """The :class:`Session` of a row: its record's fields, token usage as a value object."""
    record = row_to_record(row)
    usage = record.pop("token_usage")
    del usage["total_tokens"]  # derived by TokenUsage
    return Session(**record, token_usage=TokenUsage(**usage))


def session_to_row(session: Session) -> tuple[Any, ...]:
    usage = session.token_usage
    return (
        session.id,
        session.backend,
        session.backend_session_id,
        epoch(session.created_at),
        epoch(session.last_used),
        session.working_dir,
        session.model,
        session.initial_prompt,
        session.title,
        session.status,
        session.turn_count,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        usage.cost_usd,
        json.dumps(list(session.tags), ensure_ascii=False),
        dump_metadata(session.metadata),
        session.error_message,
        session.parent_id,
        session.owner,
    )

