"""HTTP client helpers for tests against a real server: source addresses, error styles."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter


def bound_session(source_ip: str = "127.0.0.1", pool: int = 1) -> requests.Session:
    """A session whose connections come from ``source_ip`` (any 127/8 address works)."""

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (source_ip, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    adapter = SourceAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    return session


def error_style(body: object) -> str:
    """Which error format a body is in: native, openai or anthropic."""
    if isinstance(body, dict):
        if body.get("success") is False and "code" in body:
            return "native"
        if body.get("type") == "error" and isinstance(body.get("error"), dict):
            return "anthropic"
        if isinstance(body.get("error"), dict) and "message" in body["error"]:
            return "openai"
    return "unknown"


def served_prefixes(server) -> set[str]:
    paths = requests.get(server.url("/openapi.json"), timeout=10).json()["paths"]
    return {p for p in ("/openai/v1", "/anthropic/v1") if any(k.startswith(p) for k in paths)}


def expected_style(server, path: str) -> str:
    for prefix, style in (("/openai/v1", "openai"), ("/anthropic/v1", "anthropic")):
        if path.startswith(prefix) and prefix in served_prefixes(server):
            return style
    return "native"
