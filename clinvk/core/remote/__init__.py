"""Runs on agent hosts: Celery carries the work, Redis Streams carry the output back.

Nothing here is imported on the embedded path (``execution.mode: embedded``, the default):
the engine reaches this package only through :func:`clinvk.core.runner.make_runner` when
the configuration asks for Celery. The protocol and the design are in docs/deployment.md.

* ``names``: every queue name and Redis key, derived from ``execution.queue_prefix``;
* ``channel``: the per-run event stream (worker writes CLI lines, gateway reads them);
* ``hosts``: agent-host heartbeats and which host holds each session;
* ``celeryapp``: the Celery application both sides share (settings, task name);
* ``agent``: the worker side of one run; ``worker``: ``clinvk worker``;
* ``client``: the gateway side, a process stand-in the engine reads like a local one.
"""
