"""``GET /api/v1/usage``: the usage ledger summed by key, backend, model, day or hour.

A caller sees the rows of its own key; a key listed in ``server.admin_key_ids`` (and a
server without keys) sees all. Validation of the question is the engine's
(:func:`clinvk.core.usage.parse_query`), so this route and ``clinvk usage`` agree.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields

from clinvk.core.errors import StoreError
from clinvk.core.usage import UsageLedger, parse_query
from clinvk.core.usage.rows import GROUPS, MAX_RECENT
from clinvk.server import current_gateway
from clinvk.server.native.schemas import envelope
from clinvk.server.native.views import URL_PREFIX, ok
from clinvk.server.parsing import Blueprint
from clinvk.server.security import identify

blp = Blueprint("usage", __name__, url_prefix=URL_PREFIX,
                description="Usage: runs, tokens and cost per key, backend, model and day.")

_TIME = ("a date (2026-12-07), an RFC 3339 time (2026-12-07T08:00:00Z) or an age "
         "(24h, 7d)")


class UsageQuerySchema(Schema):
    since = fields.String(metadata={"description": f"Runs that ended at or after: {_TIME}."})
    until = fields.String(metadata={"description": f"Runs that ended before: {_TIME}."})
    group_by = fields.String(metadata={
        "description": "Comma-separated: " + ", ".join(GROUPS) + ". Empty = one total.",
        "example": "key,backend"})
    recent = fields.String(metadata={
        "description": f"Also return this many most recent runs (0-{MAX_RECENT}, default 0)."})


class UsageGroupSchema(Schema):
    key = fields.String(allow_none=True, metadata={"description": "Key id (never the key)."})
    backend = fields.String()
    model = fields.String(allow_none=True)
    day = fields.String(metadata={"description": "UTC date, YYYY-MM-DD."})
    hour = fields.String(metadata={"description": "UTC hour, YYYY-MM-DDTHH:00Z."})
    origin = fields.String()
    status = fields.String()
    runs = fields.Integer()
    failed_runs = fields.Integer()
    input_tokens = fields.Integer(metadata={"description": "Includes cached input."})
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    cost_usd = fields.Float(allow_none=True, metadata={
        "description": "Sum of the cost the CLIs reported (claude); null when none did."})
    duration_ms = fields.Integer()


class UsageRunSchema(Schema):
    id = fields.String()
    at = fields.String()
    key_id = fields.String(allow_none=True)
    backend = fields.String()
    model = fields.String(allow_none=True)
    origin = fields.String()
    status = fields.String()
    exit_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer()
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    cost_usd = fields.Float(allow_none=True)
    session_id = fields.String(allow_none=True)


class UsageReportSchema(Schema):
    group_by = fields.List(fields.String())
    groups = fields.List(fields.Nested(UsageGroupSchema))
    recent = fields.List(fields.Nested(UsageRunSchema))
    key_id = fields.String(allow_none=True, metadata={"description": "The caller's key id."})
    sees_all = fields.Boolean(metadata={"description": "Whether every key's rows count."})


UsageEnvelope = envelope("UsageEnvelope", UsageReportSchema)


def _ledger() -> UsageLedger:
    ledger = current_gateway().engine.accounting.ledger
    if ledger is None:
        raise StoreError("the usage ledger is not available (no session store)")
    return ledger


@blp.route("/usage")
class Usage(MethodView):
    @blp.arguments(UsageQuerySchema, location="query")
    @blp.response(200, UsageEnvelope)
    @blp.doc(operationId="getUsage", summary="Usage summary (own key; admin keys see all)")
    def get(self, args: dict[str, Any]) -> Response:
        """Runs, tokens and cost in a time range, grouped as asked."""
        principal = identify().principal
        query = parse_query(since=args.get("since"), until=args.get("until"),
                            group_by=args.get("group_by"), recent=args.get("recent"),
                            visible_to=principal)
        ledger = _ledger()
        return ok({"group_by": list(query.group_by), "groups": ledger.summary(query),
                   "recent": [row.to_dict() for row in ledger.recent(query)],
                   "key_id": principal.key_id, "sees_all": principal.sees_all})
