"""``clinvk mcp``: start the MCP server (the only CLI module that imports clinvk.mcp)."""

from __future__ import annotations

import click

from clinvk.cli.context import AppContext, pass_app
from clinvk.mcp.server import serve_http, serve_stdio


@click.command("mcp")
@click.option("--transport", type=click.Choice(["stdio", "streamable-http"]), default="stdio",
              show_default=True, help="stdio for a client that starts clinvk; "
                                      "streamable-http for remote clients.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address for streamable-http.")
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True,
              help="Port for streamable-http.")
@pass_app
def mcp_cmd(app: AppContext, transport: str, host: str, port: int) -> None:
    """Serve clinvk's agents as Model Context Protocol tools: run, parallel, chain,
    compare, sessions_list, session_show.

    \b
    claude mcp add clinvk -- clinvk mcp            # Claude Code, over stdio
    clinvk mcp --transport streamable-http --port 8090

    Server-side policy applies (workdir allow-list, privilege ceiling, caps, timeouts). Over
    HTTP every request needs one of the API keys of CLINVK_API_KEYS; see docs/mcp.md.
    """
    if transport == "stdio":
        serve_stdio(app.config)
    else:
        serve_http(app.config, host, port)
