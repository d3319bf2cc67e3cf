"""The engine of clinvk: backends, the process runner, sessions, policy and orchestration.

Nothing below this package imports flask, werkzeug, click or rich: the HTTP edge
(:mod:`clinvk.server`) and the command-line edge (:mod:`clinvk.cli`) translate into calls on
:class:`clinvk.core.engine.Engine` and render what comes back.
"""
