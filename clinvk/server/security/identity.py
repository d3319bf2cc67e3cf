"""API keys: who is asking (:func:`identify`) and the authentication step."""

from __future__ import annotations

import dataclasses

from flask import g, request

from clinvk.core.keys import GOPASS_RETRY_SECS, KeyStore, KeysUnavailable, fingerprint
from clinvk.core.ownership import Principal
from clinvk.server.errors import ApiError, ApiException
from clinvk.server.runtime.connection import close_after_response
from clinvk.server.security.bodies import large_unread_body
from clinvk.server.security.cors import is_preflight
from clinvk.server.security.state import state

#: Reachable without a key. ``/metrics`` too unless ``server.metrics_require_auth``.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/dashboard"})
# The offline Swagger UI and dashboard assets (no data: the page fetches it with a key).
PUBLIC_PREFIXES = ("/docs/static/", "/dashboard/static/")
METRICS_PATH = "/metrics"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is asking: ``state`` is ``open`` (no keys configured), ``valid``, ``missing``,
    ``invalid`` or ``unavailable`` (keys cannot be loaded); ``key_id`` only when valid."""

    state: str
    key_id: str | None = None
    admin: bool = False

    @property
    def principal(self) -> Principal:
        """The caller for ownership checks (clinvk.core.ownership)."""
        return Principal(self.key_id, self.admin)


def presented_keys() -> list[str]:
    """Credentials of this request: ``X-Api-Key`` and/or ``Authorization: Bearer``."""
    out = []
    header_key = request.headers.get("X-Api-Key", "").strip()
    if header_key:
        out.append(header_key)
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        out.append(token.strip())
    return out


def identify() -> Identity:
    """This request's identity (computed once per request)."""
    cached = g.get("clinvk_identity")
    if cached is not None:
        return cached
    store: KeyStore = state().keys
    if not store.enabled:
        identity = Identity("open")
    else:
        candidates = presented_keys()
        identity = Identity("missing" if not candidates else "invalid")
        try:
            for key in candidates:
                if store.matches(key):
                    key_id = fingerprint(key)
                    identity = Identity("valid", key_id,
                                        key_id in state().admin_key_ids)
                    break
        except KeysUnavailable:
            identity = Identity("unavailable")
    g.clinvk_identity = identity
    return identity


def is_public(path: str, *, metrics_public: bool) -> bool:
    if path in PUBLIC_PATHS:
        return True
    if path.startswith(PUBLIC_PREFIXES):
        return ".." not in path.split("/")  # no way out of the assets by dot segments
    return metrics_public and path == METRICS_PATH



def authenticate() -> None:
    if is_preflight() or is_public(request.path, metrics_public=state().metrics_public):
        return
    identity = identify()
    if identity.state in ("open", "valid"):
        return
    if large_unread_body():
        close_after_response()
    if identity.state == "unavailable":
        raise ApiException(ApiError(
            503, "auth_unavailable",
            "API keys cannot be loaded right now, so protected requests are refused; "
            "see the server log", headers={"Retry-After": str(int(GOPASS_RETRY_SECS))}))
    message = ("missing API key: send it as X-Api-Key or Authorization: Bearer"
               if identity.state == "missing" else "invalid API key")
    raise ApiException(ApiError(401, "unauthorized", message,
                                headers={"WWW-Authenticate": 'Bearer realm="clinvk"'}))


