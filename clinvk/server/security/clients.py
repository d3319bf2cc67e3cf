"""Client addresses (trusted proxies, ``X-Forwarded-For``) and the rate limit (flask-limiter)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from clinvk.core.config import Config
from clinvk.server.errors import ApiError, render
from clinvk.server.security.bodies import close_after_response, large_unread_body
from clinvk.server.security.identity import identify
from clinvk.server.security.state import state

log = logging.getLogger("clinvk.server.security")

def parse_networks(items: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                   ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
    peer_ip = ip_of(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not trusted or not any(peer_ip in net for net in trusted):
        return str(peer_ip)
    client = peer_ip
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        hop_ip = ip_of(hop)
        if hop_ip is None:
            break
        client = hop_ip
        if not any(hop_ip in net for net in trusted):
            break
    return str(client)


#: Where the TCP peer's address is kept once ``REMOTE_ADDR`` holds the client's.
PEER_ADDR_KEY = "clinvk.peer_addr"


def clientip_of() -> str:
    environ = request.environ
    return client_ip_from(environ.get(PEER_ADDR_KEY) or environ.get("REMOTE_ADDR") or "",
                          request.headers.get("X-Forwarded-For", ""),
                          state().trusted_proxies)


def resolve_client() -> None:
    """Behind a trusted proxy, ``REMOTE_ADDR`` becomes the client's address.

    So the access log (gunicorn's ``%(h)s``, the JSON ``remote_addr``) and anything else
    reading ``REMOTE_ADDR`` name the client, not the proxy; the peer stays available
    under :data:`PEER_ADDR_KEY`. Without trusted proxies nothing changes.
    """
    if not state().trusted_proxies:
        return
    environ = request.environ
    environ.setdefault(PEER_ADDR_KEY, environ.get("REMOTE_ADDR") or "")
    environ["REMOTE_ADDR"] = clientip_of()


def rate_limit_key() -> str:
    identity = identify()
    if identity.key_id:
        return f"key:{identity.key_id}"
    return f"ip:{clientip_of()}"


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
    if large_unread_body():
        close_after_response()
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


def init_limiter(app: Flask, config: Config) -> Limiter | None:
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

