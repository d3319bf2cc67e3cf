"""``clinvk mcp``: the MCP server process over one engine, on stdio or streamable HTTP.

The engine runs with the server-side policy, as for HTTP callers: an MCP client is another
agent, not the person at the terminal. Over stdio the client is the local process that
started us (``LOCAL``: it sees every session). Over HTTP every request must carry one of the
gateway's API keys (``X-Api-Key`` or ``Authorization: Bearer``, checked in constant time by
:class:`clinvk.core.keys.KeyStore`), and sessions belong to that key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from clinvk import __version__
from clinvk.core.config import Config, clinvk_home
from clinvk.core.engine import Engine
from clinvk.core.keys import KeyStore, KeysUnavailable, key_id
from clinvk.core.ownership import LOCAL, Principal
from clinvk.core.store import Store, configured_store
from clinvk.mcp.tools import register

log = logging.getLogger("clinvk.mcp")

INSTRUCTIONS = (
    "clinvk runs coding agents (Claude Code, Codex CLI, Gemini CLI) on this machine. Use "
    "`run` for one prompt, `compare` for several agents' answers to one prompt, `parallel` "
    "for independent tasks and `chain` for a pipeline; `sessions_list` and `session_show` "
    "find earlier conversations to continue with run(session_id=...).")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def presented_key(headers: Any) -> str | None:
    """The key a request carries: ``X-Api-Key``, else ``Authorization: Bearer``."""
    if not headers:
        return None
    key = (headers.get("x-api-key") or "").strip()
    if key:
        return key
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class McpApp:
    """The MCP server with its engine and, over HTTP, the key check."""

    config: Config
    server: MCPServer
    store: Store
    keys: KeyStore | None

    def principal(self, ctx: Context) -> Principal:
        if self.keys is None or not self.keys.enabled:
            return LOCAL
        key = presented_key(ctx.headers)  # checked by RequireApiKey before any tool runs
        if key is None:
            raise ToolError("missing API key: send it as X-Api-Key or Authorization: Bearer")
        ident = key_id(key)
        return Principal(ident, ident in self.config.server.admin_key_ids)


def build(config: Config, *, http: bool) -> McpApp:
    store = configured_store(config, clinvk_home())
    engine = Engine(config, store, server_mode=True)
    server = MCPServer(name="clinvk", version=__version__, instructions=INSTRUCTIONS)
    app = McpApp(config, server, store, KeyStore(config) if http else None)
    register(server, engine, store, app.principal)
    return app


class RequireApiKey:
    """ASGI middleware: every request needs one of the configured keys (401 otherwise,
    503 while the keys cannot be loaded), the same rule as the HTTP gateway."""

    def __init__(self, app: Callable[..., Awaitable[None]], keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers") or []}
        key = presented_key(headers)
        try:
            ok = key is not None and self.keys.matches(key)
        except KeysUnavailable as exc:
            log.error("API keys cannot be loaded: %s", exc)
            await _refuse(send, 503, "API keys cannot be loaded right now; see the server log")
            return
        if not ok:
            await _refuse(send, 401, "missing API key: send it as X-Api-Key or Authorization: "
                          "Bearer" if key is None else "invalid API key")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def serve_stdio(config: Config) -> None:
    app = build(config, http=False)
    try:
        app.server.run("stdio")
    finally:
        app.store.close()


def serve_http(config: Config, host: str, port: int) -> None:
    import uvicorn

    app = build(config, http=True)
    assert app.keys is not None
    if not app.keys.enabled and host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("clinvk mcp: refusing to serve MCP on a non-loopback address without "
                         "API keys (set CLINVK_API_KEYS)")
    asgi = RequireApiKey(app.server.streamable_http_app(host=host), app.keys)
    try:
        uvicorn.run(asgi, host=host, port=port, log_level="warning")
    finally:
        app.store.close()
