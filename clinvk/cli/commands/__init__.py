"""Commands of the ``clinvk`` CLI that live in their own modules, loaded on demand.

Adding one: write ``clinvk/cli/commands/<name>.py`` with a click command or group, and add
one line to :data:`REGISTRY` — ``name: (module, attribute, one-line summary)``. The module
is imported only when the command runs or its help is shown, so ``clinvk --help`` and plain
prompts stay cheap.
"""

from __future__ import annotations

from typing import NamedTuple


class CommandInfo(NamedTuple):
    module: str
    attribute: str
    summary: str


REGISTRY: dict[str, CommandInfo] = {
    "jobs": CommandInfo("clinvk.cli.commands.jobs", "jobs_group",
                        "Submit, list, follow and cancel background jobs on a server."),
    "keys": CommandInfo("clinvk.cli.commands.keys", "keys_group",
                        "API key ids for server.admin_key_ids."),
    "mcp": CommandInfo("clinvk.cli.commands.mcp", "mcp_cmd",
                       "Serve clinvk's agents as MCP tools (stdio or streamable HTTP)."),
}
