"""The security layer of the gateway: API keys, CORS, rate limits, body size.

Every request passes these ``before_request`` steps, in this order, after the request id
is fixed and the metrics timer started (see :mod:`clinvk.server.observability`):

1. **Rate limit** (flask-limiter, one application-wide limit): every path counts,
   including ``/health``, ``/metrics``, preflights and unknown paths. The bucket is the
   API key when the request carries a *valid* one (hashed, never stored in clear), else
   the client IP. ``X-Forwarded-For`` is believed only when the TCP peer is one of
   ``server.trusted_proxies`` (then ``REMOTE_ADDR``, and so the access log, is the
   client's address too). A request with a bad key counts against its IP, so guessing
   keys is rate limited too.
2. **Authentication**: with keys configured, every path except the public ones needs
   ``X-Api-Key: KEY`` or ``Authorization: Bearer KEY``. CORS preflights pass (browsers
   never send credentials on them), so browser clients work with keys enabled.
3. **Body size**: a declared ``Content-Length`` above ``server.max_request_body_bytes``
   is refused at once; a chunked body is read up to the limit here, before the handler.

Refusals are raised as :class:`~clinvk.server.errors.ApiException`, so a 401/413/429/503
is rendered in the format of the route it hit (native envelope, OpenAI, Anthropic).
Responses that refuse a request whose body was not read close the connection.

Keys come from ``CLINVK_API_KEYS`` (comma-separated) or, when that is unset or empty,
from gopass (``server.api_keys_gopass_path`` or ``CLINVK_API_KEYS_GOPASS_PATH``). When a
gopass path is configured and gopass fails, protected requests get 503: the server never
silently runs open. Keys are compared in constant time against every configured key
(SHA-256 digests, so neither the length nor the position of a match leaks).

:func:`check_bind` refuses to start a server reachable from other machines without keys
(unless ``server.allow_unauthenticated_remote``); ``runtime.binding.gunicorn_settings``
wires it into gunicorn's start-up so it holds for ``clinvk serve`` and
``gunicorn -c gunicorn.conf.py``.

One module per concern: :mod:`.identity` (keys, authentication), :mod:`.clients` (client
address, rate limit), :mod:`.cors`, :mod:`.bodies` (size limit, connection close),
:mod:`clinvk.server.runtime.binding` (bind refusal, run by the gunicorn master);
:func:`init_app` below wires them in their order.
"""

from __future__ import annotations

from flask import Flask

from clinvk.core.config import Config
from clinvk.core.keys import KeyStore
from clinvk.server.runtime.binding import check_bind, exposed_addresses
from clinvk.server.security.bodies import check_body_size
from clinvk.server.security.clients import client_ip_from, parse_networks, resolve_client
from clinvk.server.security.cors import init_cors
from clinvk.server.security.identity import Identity, authenticate, identify
from clinvk.server.security.state import EXTENSION, SecurityState

__all__ = ["Identity", "check_bind", "client_ip_from", "exposed_addresses",
           "identify", "init_app", "parse_networks"]


def init_app(app: Flask) -> None:
    """Install the layer (an ``EXTENSIONS`` hook of :mod:`clinvk.server.app`)."""
    config: Config = app.extensions["clinvk"].config
    srv = config.server
    state = SecurityState(
        keys=KeyStore(config),
        trusted_proxies=parse_networks(srv.trusted_proxies),
        metrics_public=not srv.metrics_require_auth,
        max_body=srv.max_request_body_bytes or None,
        admin_key_ids=frozenset(srv.admin_key_ids),
    )
    app.extensions[EXTENSION] = state
    init_cors(app, config)
    # Order matters: the client address is resolved first, then the limiter's
    # before_request runs (it also meters refused requests), then authentication, then
    # the body-size check. Steps that run back to back are one hook: Flask pays a
    # coroutine check per hook on every request.
    if srv.rate_limit_enabled:  # flask-limiter is loaded only when it has work to do
        from clinvk.server.security.limiter import init_limiter

        app.before_request(resolve_client)
        state.limiter = init_limiter(app, config)
        app.before_request(admit)
    else:
        app.before_request(guard)
    _document(app, state)


def guard() -> None:
    """Every security step of a request, in order, when no rate limit sits between them."""
    resolve_client()
    admit()


def admit() -> None:
    """The steps after the rate limit: the caller's key, then the declared body size."""
    authenticate()
    check_body_size()


def _document(app: Flask, state: SecurityState) -> None:
    """Describe the key schemes in /openapi.json (required globally when keys are set)."""
    api = app.extensions.get("clinvk.api")
    if api is None:
        return

    def step() -> None:
        components = api.spec.components
        components.security_scheme("ApiKeyHeader", {"type": "apiKey", "in": "header",
                                                    "name": "X-Api-Key"})
        components.security_scheme("BearerAuth", {"type": "http", "scheme": "bearer"})
        if state.keys.enabled:
            api.spec.options["security"] = [{"ApiKeyHeader": []}, {"BearerAuth": []}]

    api.document(step)  # when the document is first built
