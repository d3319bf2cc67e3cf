"""The commands of ``clinvk``, one module per command group, loaded on demand.

Adding a command: write ``clinvk/cli/commands/<name>.py`` with a click command or group,
and add one line to :data:`REGISTRY` — ``name: CommandInfo(module, attribute, one-line
summary)``. The module is imported only when the command runs or its own help is shown,
so ``clinvk --help`` (which prints the summaries below) and plain prompts stay cheap.
"""

from __future__ import annotations

from typing import NamedTuple


class CommandInfo(NamedTuple):
    module: str
    attribute: str
    summary: str
    #: Not listed in ``clinvk --help`` (the prompt command is shown as ``clinvk PROMPT``).
    hidden: bool = False


_RUN = "clinvk.cli.commands.run"
_ORCHESTRATE = "clinvk.cli.commands.orchestrate"
_INFO = "clinvk.cli.commands.info"

REGISTRY: dict[str, CommandInfo] = {
    "run": CommandInfo(_RUN, "run_cmd", "Run PROMPT on a backend.", hidden=True),
    "resume": CommandInfo(_RUN, "resume_cmd",
                          "Send PROMPT to a stored session (by ID, prefix or --last)."),
    "sessions": CommandInfo("clinvk.cli.commands.sessions", "sessions_group",
                            "List, show, delete and clean up stored sessions."),
    "parallel": CommandInfo(_ORCHESTRATE, "parallel_cmd",
                            "Run the tasks of a file concurrently (always ephemeral)."),
    "chain": CommandInfo(_ORCHESTRATE, "chain_cmd",
                         "Run the steps of a file in order ({{previous}} = last output)."),
    "compare": CommandInfo(_ORCHESTRATE, "compare_cmd",
                           "Send the same PROMPT to several backends and compare."),
    "config": CommandInfo("clinvk.cli.commands.config", "config_group",
                          "Show and change the configuration."),
    "serve": CommandInfo("clinvk.cli.commands.serve", "serve_cmd",
                         "Run the HTTP server until Ctrl-C or SIGTERM."),
    "version": CommandInfo(_INFO, "version_cmd",
                           "Show the clinvk version and each backend's version."),
    "completion": CommandInfo(_INFO, "completion_cmd",
                              "Print the shell completion script for SHELL."),
    "jobs": CommandInfo("clinvk.cli.commands.jobs", "jobs_group",
                        "Submit, list, follow and cancel background jobs on a server."),
    "keys": CommandInfo("clinvk.cli.commands.keys", "keys_group",
                        "API key ids for server.admin_key_ids."),
    "mcp": CommandInfo("clinvk.cli.commands.mcp", "mcp_cmd",
                       "Serve clinvk's agents as MCP tools (stdio or streamable HTTP)."),
    "usage": CommandInfo("clinvk.cli.commands.usage", "usage_cmd",
                         "Runs, tokens and cost per key, backend, model or day."),
    "worker": CommandInfo("clinvk.cli.commands.worker", "worker_cmd",
                          "Run this machine as an agent host (Celery; execution.mode celery)."),
}
