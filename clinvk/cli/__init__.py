"""The command-line edge of clinvk: click commands that translate into engine calls.

Layout (each module one job):

* :mod:`clinvk.cli.root` — the ``clinvk`` group: prompt-as-first-word routing, global
  options accepted after the command, the lazy command registry, :func:`main`.
* :mod:`clinvk.cli.commands` — one module per command group and :data:`REGISTRY`.
  **Adding a command is one module plus one registry line**: write
  ``clinvk/cli/commands/<name>.py`` with a click command or group (take the app context
  with :data:`clinvk.cli.context.pass_app`), then add
  ``"<name>": CommandInfo("clinvk.cli.commands.<name>", "<attribute>", "<one-line summary>")``
  to ``REGISTRY``. The module is imported only when the command is used.
* :mod:`clinvk.cli.context` — the per-invocation config, store and engines.
* :mod:`clinvk.cli.options` — options shared by several commands, prompt reading, completion.
* :mod:`clinvk.cli.interrupts` — runs on a worker thread, Ctrl-C/SIGTERM cancel them.
* :mod:`clinvk.cli.output` — exit codes, one-line errors, a run's printed result.
* :mod:`clinvk.cli.render` (rich tables and progress) and :mod:`clinvk.cli.taskfiles`
  (parallel and chain files).

Only :mod:`clinvk.cli.commands.serve` imports the HTTP edge.
"""

from clinvk.cli.root import main

__all__ = ["main"]
