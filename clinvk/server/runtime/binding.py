"""The bind refusal: no server reachable from other machines without API keys (checked by
the gunicorn master before it listens)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from clinvk.core.config import Config
from clinvk.core.errors import ConfigError
from clinvk.core.keys import keys_configured
from clinvk.server.runtime.connection import remember_request

log = logging.getLogger("clinvk.server.security")

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


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.", "ip6-localhost"):
        return True
    ip = ip_of(host) if host else None
    if ip is not None:
        return ip.is_loopback
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {ip_of(str(info[4][0])) for info in infos}
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
    """The bind check and the request holder (merged by ``serve.gunicorn_settings``)."""

    def on_starting(server: Any) -> None:
        check_bind(server.cfg.address, config)
        if not keys_configured(config):
            exposed = exposed_addresses(server.cfg.address)
            if exposed:
                log.warning("listening on %s WITHOUT API keys "
                            "(server.allow_unauthenticated_remote)", ", ".join(exposed))

    return {"on_starting": on_starting, "pre_request": remember_request}


