"""The security layer of the gateway (SPEC §7.1): API keys, CORS, rate limits, body size.

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
(unless ``server.allow_unauthenticated_remote``); :func:`gunicorn_settings` wires it into
gunicorn's start-up so it holds for ``clinvk serve`` and ``gunicorn -c gunicorn.conf.py``.
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from clinvk.core.config import Config
from clinvk.core.errors import ConfigError
from clinvk.core.keys import (  # noqa: F401 - part of this module's surface
    API_KEYS_ENV,
    GOPASS_PATH_ENV,
    GOPASS_RETRY_SECS,
    KeyStore,
    KeysUnavailable,
    fingerprint,
    gopass_path,
    keys_configured,
    parse_keys,
    run_gopass,
)
from clinvk.core.ownership import Principal
from clinvk.server.errors import ApiError, ApiException, render

log = logging.getLogger("clinvk.server.security")

#: Reachable without a key. ``/metrics`` too unless ``server.metrics_require_auth``.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/dashboard"})
# The offline Swagger UI and dashboard assets (no data: the page fetches it with a key).
PUBLIC_PREFIXES = ("/docs/static/", "/dashboard/static/")
METRICS_PATH = "/metrics"

#: Request headers browsers may send cross-origin: what the OpenAI and Anthropic SDKs
#: (and the native API) send. ``x-stainless-*`` is the SDKs' telemetry family.
CORS_ALLOW_HEADERS = (
    "Accept", "Authorization", "Content-Type", "X-Api-Key", "X-Request-ID",
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "OpenAI-Organization", "OpenAI-Project", "OpenAI-Beta", "Idempotency-Key",
    re.compile(r"x-stainless-[a-z0-9-]+\Z", re.IGNORECASE),
)
CORS_EXPOSE_HEADERS = (
    "X-Request-ID", "request-id", "Retry-After", "X-RateLimit-Limit",
    "X-RateLimit-Remaining", "X-RateLimit-Reset", "x-should-retry",
)
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Default origins: the local machine, any port, http or https.
DEFAULT_CORS_ORIGINS = (
    re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?\Z", re.IGNORECASE),
)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EXTENSION = "clinvk.security"


# --------------------------------------------------------------------------- API keys


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
    store: KeyStore = _state().keys
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
                                        key_id in _state().admin_key_ids)
                    break
        except KeysUnavailable:
            identity = Identity("unavailable")
    g.clinvk_identity = identity
    return identity


# --------------------------------------------------------------------------- client IP


def parse_networks(items: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                   ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_ip_from(peer: str, forwarded_for: str, trusted: tuple[Any, ...]) -> str:
    """The client address: the TCP peer, or through trusted proxies the nearest untrusted hop.

    ``X-Forwarded-For`` is read right to left (each proxy appends the address it saw), so
    a client cannot pick its identity by prepending entries: only hops added by trusted
    proxies are skipped. An unparsable hop ends the walk at the last trusted address.
    """
    peer_ip = _ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not trusted or not any(peer_ip in net for net in trusted):
        return str(peer_ip)
    client = peer_ip
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break
        client = hop_ip
        if not any(hop_ip in net for net in trusted):
            break
    return str(client)


#: Where the TCP peer's address is kept once ``REMOTE_ADDR`` holds the client's.
PEER_ADDR_KEY = "clinvk.peer_addr"


def client_ip() -> str:
    environ = request.environ
    return client_ip_from(environ.get(PEER_ADDR_KEY) or environ.get("REMOTE_ADDR") or "",
                          request.headers.get("X-Forwarded-For", ""),
                          _state().trusted_proxies)


def _resolve_client() -> None:
    """Behind a trusted proxy, ``REMOTE_ADDR`` becomes the client's address.

    So the access log (gunicorn's ``%(h)s``, the JSON ``remote_addr``) and anything else
    reading ``REMOTE_ADDR`` name the client, not the proxy; the peer stays available
    under :data:`PEER_ADDR_KEY`. Without trusted proxies nothing changes.
    """
    if not _state().trusted_proxies:
        return
    environ = request.environ
    environ.setdefault(PEER_ADDR_KEY, environ.get("REMOTE_ADDR") or "")
    environ["REMOTE_ADDR"] = client_ip()


def rate_limit_key() -> str:
    identity = identify()
    if identity.key_id:
        return f"key:{identity.key_id}"
    return f"ip:{client_ip()}"


# --------------------------------------------------------------------------- rate limits


def rate_limit_string(rps: int, burst: int) -> str | None:
    """``server.rate_limit_rps``/``burst`` as a flask-limiter moving-window limit.

    At most ``max(burst, rps)`` requests in any window of ``round(max(burst, rps) / rps)``
    seconds: bursts up to ``burst`` at once, about ``rps`` per second sustained. ``burst``
    0 means twice the rate (as in the Go tool). ``rps`` 0 turns limiting off.
    """
    if rps <= 0:
        return None
    amount = max(burst or 2 * rps, rps)
    window = max(1, round(amount / rps))
    return f"{amount} per {window} second"


def _rate_limited(exc: RateLimitExceeded) -> Response:
    limit = getattr(exc, "limit", None)
    text = f" ({limit.limit})" if limit is not None and getattr(limit, "limit", None) else ""
    err = ApiError(429, "rate_limited", f"rate limit exceeded{text}; retry after the "
                   "time in Retry-After")
    err.headers["Retry-After"] = "1"  # refined by flask-limiter's header injection
    if _large_unread_body():
        _close_after_response()
    return render(err)


def _tidy_retry_after(response: Response) -> Response:
    """Runs after flask-limiter's header injection (registered before it).

    flask-limiter puts ``Retry-After`` on every response and computes it as whole seconds
    to the window reset, which can round down to 0: keep it only where it means something
    (errors) and never below one second on a 429.
    """
    if response.status_code < 400:
        response.headers.pop("Retry-After", None)
    elif response.status_code == 429:
        value = response.headers.get("Retry-After", "")
        if not value.isdigit() or int(value) < 1:
            response.headers["Retry-After"] = "1"
    return response


# --------------------------------------------------------------------------- request hooks


@dataclasses.dataclass
class SecurityState:
    keys: KeyStore
    trusted_proxies: tuple[Any, ...]
    metrics_public: bool
    max_body: int | None
    admin_key_ids: frozenset[str] = frozenset()
    limiter: Limiter | None = None


def _state() -> SecurityState:
    from flask import current_app

    return current_app.extensions[_EXTENSION]


def is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def is_public(path: str, *, metrics_public: bool) -> bool:
    if path in PUBLIC_PATHS:
        return True
    if path.startswith(PUBLIC_PREFIXES):
        return ".." not in path.split("/")  # no way out of the assets by dot segments
    return metrics_public and path == METRICS_PATH


#: A refused request whose unread body may be larger than this closes its connection
#: (smaller ones are cheaper to drain than a new connection is to open).
DRAIN_LIMIT = 64 * 1024


def _large_unread_body() -> bool:
    return _is_chunked() or (request.content_length or 0) > DRAIN_LIMIT


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _authenticate() -> None:
    if is_preflight() or is_public(request.path, metrics_public=_state().metrics_public):
        return
    identity = identify()
    if identity.state in ("open", "valid"):
        return
    if _large_unread_body():
        _close_after_response()
    if identity.state == "unavailable":
        raise ApiException(ApiError(
            503, "auth_unavailable",
            "API keys cannot be loaded right now, so protected requests are refused; "
            "see the server log", headers={"Retry-After": str(int(GOPASS_RETRY_SECS))}))
    message = ("missing API key: send it as X-Api-Key or Authorization: Bearer"
               if identity.state == "missing" else "invalid API key")
    raise ApiException(ApiError(401, "unauthorized", message,
                                headers={"WWW-Authenticate": 'Bearer realm="clinvk"'}))


def _check_body_size() -> None:
    limit = _state().max_body
    if not limit or request.method not in _BODY_METHODS or is_preflight():
        return
    length = request.content_length
    if length is not None and length > limit:
        _close_after_response()
        raise RequestEntityTooLarge()
    if length is None and _is_chunked():
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
        _close_after_response()
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(bytes(data))
    environ["CONTENT_LENGTH"] = str(len(data))
    environ["wsgi.input_terminated"] = True


# --------------------------------------------------------------------------- connection close

_gunicorn_request = threading.local()


def _remember_request(worker: Any, req: Any) -> None:
    """gunicorn ``pre_request`` hook: lets the app ask for the connection to be closed."""
    _gunicorn_request.current = req


def _close_after_response() -> None:
    """Close the connection after this response instead of draining an unread body.

    gunicorn would otherwise read (and discard) the rest of a refused upload before the
    next request on the connection; a client declaring gigabytes could keep a thread busy.
    """
    req = getattr(_gunicorn_request, "current", None)
    if req is not None and hasattr(req, "must_close"):
        req.must_close = True


# --------------------------------------------------------------------------- bind refusal


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.", "ip6-localhost"):
        return True
    ip = _ip(host) if host else None
    if ip is not None:
        return ip.is_loopback
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {_ip(str(info[4][0])) for info in infos}
    return bool(addresses) and all(a is not None and a.is_loopback for a in addresses)


def exposed_addresses(addresses: Iterable[Any]) -> list[str]:
    """The bind addresses (gunicorn ``cfg.address`` items) reachable from other machines."""
    out = []
    for address in addresses:
        if isinstance(address, tuple):
            host = str(address[0])
            if not _is_loopback_host(host):
                out.append(host or "*")
        elif isinstance(address, str | bytes):
            text = address.decode() if isinstance(address, bytes) else address
            if text.startswith("fd://"):
                out.append(text)  # an inherited socket: cannot tell, assume exposed
            # anything else is a unix socket path: local only
    return out


def check_bind(addresses: Iterable[Any], config: Config,
               environ: Mapping[str, str] | None = None) -> None:
    """Refuse a non-loopback bind without API keys unless the operator accepted the risk."""
    if config.server.allow_unauthenticated_remote or keys_configured(config, environ):
        return
    exposed = exposed_addresses(addresses)
    if exposed:
        raise ConfigError(
            f"refusing to listen on {', '.join(exposed)} without API keys: anyone who can "
            "reach it could run coding agents on this machine. Set CLINVK_API_KEYS (or "
            "server.api_keys_gopass_path), bind 127.0.0.1, or set "
            "server.allow_unauthenticated_remote: true to accept the risk",
            field="server.host")


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """gunicorn hooks of this layer, for :func:`clinvk.server.runtime.serve.gunicorn_settings`."""

    def on_starting(server: Any) -> None:
        check_bind(server.cfg.address, config)
        if not keys_configured(config):
            exposed = exposed_addresses(server.cfg.address)
            if exposed:
                log.warning("listening on %s WITHOUT API keys "
                            "(server.allow_unauthenticated_remote)", ", ".join(exposed))

    return {"on_starting": on_starting, "pre_request": _remember_request}


# --------------------------------------------------------------------------- CORS


def cors_origins(configured: Iterable[str]) -> list[Any] | str:
    """Configured origins as anchored patterns; ``*`` in an origin matches within a label."""
    items = list(configured)
    if not items:
        return list(DEFAULT_CORS_ORIGINS)
    if "*" in items:
        return "*"
    out: list[Any] = []
    for origin in items:
        pattern = re.escape(origin.rstrip("/")).replace(r"\*", r"[^/]*")
        out.append(re.compile(pattern + r"\Z", re.IGNORECASE))
    return out


def _init_cors(app: Flask, config: Config) -> None:
    srv = config.server
    origins = cors_origins(srv.cors_allowed_origins)
    wildcard = origins == "*"
    if wildcard and srv.cors_allow_credentials:
        log.warning("CORS: server.cors_allow_credentials with origin '*' lets every web "
                    "site make credentialed requests; the origin is echoed, not '*'")
    CORS(app, resources={r"/*": {}}, origins=origins, methods=list(CORS_METHODS),
         allow_headers=list(CORS_ALLOW_HEADERS), expose_headers=list(CORS_EXPOSE_HEADERS),
         supports_credentials=srv.cors_allow_credentials, max_age=srv.cors_max_age or None,
         send_wildcard=wildcard and not srv.cors_allow_credentials, vary_header=True)


# --------------------------------------------------------------------------- wiring


def _init_limiter(app: Flask, config: Config) -> Limiter | None:
    srv = config.server
    limit = rate_limit_string(srv.rate_limit_rps, srv.rate_limit_burst)
    if not srv.rate_limit_enabled or limit is None:
        return None
    storage_options: dict[str, Any] = {}
    if srv.rate_limit_storage_uri.startswith(("redis://", "rediss://", "redis+")):
        storage_options = {"socket_connect_timeout": 2, "socket_timeout": 2}
    app.after_request(_tidy_retry_after)  # after_request hooks run in reverse order
    limiter = Limiter(
        rate_limit_key,
        application_limits=[limit],
        strategy="moving-window",
        storage_uri=srv.rate_limit_storage_uri,
        storage_options=storage_options,
        headers_enabled=True,
        key_prefix="clinvk",
        # Not the bare endpoint: flask-limiter skips requests without one (404s) and
        # endpoints named "*.static" (the docs assets); here every request counts.
        request_identifier=lambda: f"{request.endpoint or '-'}:route",
        # Storage down (e.g. redis restarting): limit per worker in memory meanwhile,
        # rather than failing requests or dropping the limit.
        in_memory_fallback=[limit],
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    log.info("rate limiting: %s per client (%s)", limit,
             srv.rate_limit_storage_uri.partition("://")[0] + "://")
    return limiter


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
    app.extensions[_EXTENSION] = state
    _init_cors(app, config)
    # Order matters: the client address is resolved first, then the limiter's
    # before_request runs (it also meters refused requests), then authentication, then
    # the body-size check.
    app.before_request(_resolve_client)
    state.limiter = _init_limiter(app, config)
    app.before_request(_authenticate)
    app.before_request(_check_body_size)
    _document(app, state)


def _document(app: Flask, state: SecurityState) -> None:
    """Describe the key schemes in /openapi.json (required globally when keys are set)."""
    api = app.extensions.get("clinvk.api")
    if api is None:
        return
    components = api.spec.components
    components.security_scheme("ApiKeyHeader", {"type": "apiKey", "in": "header",
                                                "name": "X-Api-Key"})
    components.security_scheme("BearerAuth", {"type": "http", "scheme": "bearer"})
    if state.keys.enabled:
        api.spec.options["security"] = [{"ApiKeyHeader": []}, {"BearerAuth": []}]
