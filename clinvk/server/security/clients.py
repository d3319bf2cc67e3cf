"""Client addresses: trusted proxies and ``X-Forwarded-For``."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from flask import request

from clinvk.server.runtime.binding import ip_of
from clinvk.server.security.state import state

log = logging.getLogger("clinvk.server.security")

def parse_networks(items: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                   ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)




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
