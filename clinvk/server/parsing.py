"""Request parsing for the API blueprints: JSON bodies under the gateway's rules.

Every API blueprint is a :class:`Blueprint` whose arguments are read by :class:`JsonParser`;
what goes wrong while reading becomes an :class:`~clinvk.server.errors.ApiError` and is
rendered in the format of the API the request came through.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import current_app, request
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, abort

from clinvk.server import jsonbody
from clinvk.server.errors import ApiError, ApiException

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_mimetype(mimetype: str) -> bool:
    return webargs_core.is_json(mimetype)


class JsonParser(FlaskParser):
    """webargs parser with the gateway's rules for JSON bodies.

    * a missing ``Content-Type`` is read as JSON (as the Go server did), any non-JSON type
      is a 415, an empty body is a 400 naming ``body``;
    * validation failures are 400 (not webargs' default 422), rendered by this module.
    """

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Any) -> Any:
        if req.mimetype and not is_json_mimetype(req.mimetype):
            abort(415)
        data = req.get_data(cache=True)
        if not data.strip():
            raise ApiException(ApiError(400, "invalid_request", "request body is required",
                                        field="body"))
        gateway = current_app.extensions.get("clinvk")  # absent in a bare test app
        max_depth = gateway.config.server.max_json_depth if gateway else jsonbody.DEFAULT_DEPTH
        try:
            value = webargs_core.parse_json(data)
        except RecursionError:
            raise jsonbody.too_deep(max_depth) from None
        except ValueError as exc:  # e.g. an integer literal longer than Python converts
            raise ApiException(ApiError(400, "invalid_json", f"request body is not valid "
                                        f"JSON: {exc}", field="body")) from None
        jsonbody.check_value(value, max_depth)
        return value


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint that parses with :class:`JsonParser`."""

    ARGUMENTS_PARSER = JsonParser()


def check_body_request() -> None:
    """``before_request`` for API blueprints: reject a non-JSON body early with 415."""
    if request.method in _BODY_METHODS:
        mimetype = request.mimetype
        if mimetype and not is_json_mimetype(mimetype):
            abort(415)
