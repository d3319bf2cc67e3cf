"""The Model Context Protocol edge of clinvk: agents calling agents.

``clinvk mcp`` serves the engine's runs, orchestration and sessions as MCP tools, over stdio
(the default, for a client that starts it) or streamable HTTP (for remote clients, behind
the same API keys as the HTTP gateway). Tools: :mod:`clinvk.mcp.tools`; the process-level
wiring and transports: :mod:`clinvk.mcp.server`.
"""
