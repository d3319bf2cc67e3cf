"""The ``/openai/v1`` blueprint and its dialect, shared by every OpenAI route module.

The chat routes (``views``), the Responses API (``responses``) and its stored responses
(``stored``) all register on :data:`blp`; none of them imports another to get it.
"""

from __future__ import annotations

from clinvk.server import compat
from clinvk.server.dialect import Dialect
from clinvk.server.openai.errors import error_body

dialect = Dialect(
    "openai", __name__, url_prefix="/openai/v1",
    description="OpenAI-compatible API: point the OpenAI SDKs' base_url at /openai/v1.",
    request_id_header="x-request-id", error_body=error_body,
    keepalive_frame=compat.KEEPALIVE_COMMENT)
blp = dialect.blp
