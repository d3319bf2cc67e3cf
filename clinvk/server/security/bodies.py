"""Request bodies: the size limit, chunked uploads, and closing a connection instead of
draining a refused upload."""

from __future__ import annotations

import io

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from clinvk.server.runtime.connection import close_after_response
from clinvk.server.security.cors import is_preflight
from clinvk.server.security.state import state

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: A refused request whose unread body may be larger than this closes its connection
#: (smaller ones are cheaper to drain than a new connection is to open).
DRAIN_LIMIT = 64 * 1024


def large_unread_body() -> bool:
    return is_chunked() or (request.content_length or 0) > DRAIN_LIMIT


def is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()



def check_body_size() -> None:
    limit = state().max_body
    if not limit or request.method not in _BODY_METHODS or is_preflight():
        return
    length = request.content_length
    if length is not None and length > limit:
        close_after_response()
        raise RequestEntityTooLarge()
    if length is None and is_chunked():
        _buffer_chunked_body(limit)


def _buffer_chunked_body(limit: int) -> None:
    """Read a chunked body now, so the handler never starts on one that is too large.

    werkzeug would silently cut a chunked body at ``MAX_CONTENT_LENGTH`` (the handler
    would then see truncated JSON), so the raw stream is read up to one byte past the
    limit here and, if it fits, handed on as a plain stream of known length.
    """
    environ = request.environ
    raw = environ["wsgi.input"]
    data = bytearray()
    while len(data) <= limit:
        chunk = raw.read(min(64 * 1024, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        close_after_response()
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(bytes(data))
    environ["CONTENT_LENGTH"] = str(len(data))
    environ["wsgi.input_terminated"] = True
