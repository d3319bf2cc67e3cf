"""Stored responses: retrieve, stream again, cancel, delete and list the input items.

A foreground stored turn answers from the Response object kept when it finished; a
background turn answers from its job (see :mod:`background`). Another API key's response
is a 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from clinvk.core.errors import InvalidRequest
from clinvk.core.jobs.responses import ResponseRecord
from clinvk.server import compat
from clinvk.server.openai import background
from clinvk.server.openai.blueprint import blp
from clinvk.server.openai.responses import ResponseObjectSchema
from clinvk.server.openai.schemas import OpenAIErrorSchema
from clinvk.server.responses import json_response
from clinvk.server.security import identify

_ERRORS = {
    400: "Invalid parameter; `param` names it (e.g. stream on a foreground response).",
    401: "Missing or wrong API key.",
    404: "No stored response with this id for this API key.",
    409: "Delete of a background response that is still running (cancel it first).",
}


class RetrieveQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # include[], include_obfuscation: accepted and ignored

    stream = fields.Boolean(load_default=False, metadata={
        "description": "Background responses: replay the response.* events, live."})
    starting_after = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "With stream: only events with a higher sequence_number."})


class InputItemsQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    after = fields.String(metadata={"description": "An item id: list the items after it."})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class InputItemListSchema(Schema):
    object = fields.String(metadata={"enum": ["list"]})
    data = fields.List(fields.Dict())
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class DeletedSchema(Schema):
    id = fields.String()
    object = fields.String(metadata={"enum": ["response.deleted"]})
    deleted = fields.Boolean()


def _body(record: ResponseRecord) -> dict[str, Any]:
    if record.job_id is None:
        assert record.body is not None
        return record.body
    return background.job_body(record, background.service().get(record.job_id,
                                                                  identify().principal))


def _record(response_id: str) -> ResponseRecord:
    return background.service().record(response_id, identify().principal)


@blp.route("/responses/<string:response_id>")
class StoredResponse(MethodView):
    @blp.arguments(RetrieveQuerySchema(), location="query")
    @blp.response(200, ResponseObjectSchema, description="The Response object; with "
                  "`stream=true` (background responses) an SSE stream of its events.")
    @blp.doc(operationId="openaiRetrieveResponse", summary="Retrieve a stored response")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def get(self, args: dict[str, Any], response_id: str) -> Response:
        """A stored response by id; a background one shows its job's progress."""
        record = _record(response_id)
        if not args["stream"]:
            return json_response(_body(record))
        if record.job_id is None:
            raise InvalidRequest("only background responses can be streamed again",
                                 field="stream")
        return background.stream_response(record, identify().principal,
                                          args.get("starting_after"))

    @blp.response(200, DeletedSchema)
    @blp.doc(operationId="openaiDeleteResponse", summary="Delete a stored response")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def delete(self, response_id: str) -> Response:
        """A background response must have finished (cancel it first): 409 otherwise."""
        background.service().delete_record(response_id, identify().principal)
        return json_response({"id": response_id, "object": "response.deleted",
                              "deleted": True})


@blp.route("/responses/<string:response_id>/cancel")
class CancelResponse(MethodView):
    @blp.response(200, ResponseObjectSchema)
    @blp.doc(operationId="openaiCancelResponse", summary="Cancel a background response")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def post(self, response_id: str) -> Response:
        """Stops the run (its process group, from any worker); idempotent. Only
        background responses can be cancelled (400 otherwise)."""
        record = _record(response_id)
        if record.job_id is None:
            raise InvalidRequest("only background responses can be cancelled",
                                 field="response_id")
        jobs = background.service()
        return json_response(background.job_body(
            record, jobs.cancel(record.job_id, identify().principal)))


@blp.route("/responses/<string:response_id>/input_items")
class InputItems(MethodView):
    @blp.arguments(InputItemsQuerySchema(), location="query")
    @blp.response(200, InputItemListSchema)
    @blp.doc(operationId="openaiListInputItems", summary="List a response's input items")
    @compat.document_errors(blp, OpenAIErrorSchema, _ERRORS)
    def get(self, args: dict[str, Any], response_id: str) -> Response:
        """The input messages of the turn, newest first by default; cursor = `after`."""
        items = list(_record(response_id).request.get("input_items") or [])
        if args["order"] == "desc":
            items.reverse()
        after = args.get("after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise InvalidRequest("is not an item of this response", field="after")
            items = items[ids.index(after) + 1:]
        page = items[:args["limit"]]
        return json_response({"object": "list", "data": page,
                              "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None,
                              "has_more": len(items) > len(page)})
