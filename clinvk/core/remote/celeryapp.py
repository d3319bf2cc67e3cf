"""The Celery application gateways and agent hosts share.

Settings that matter for agents, which have side effects and must never run twice:

* ``task_acks_late`` with ``worker_prefetch_multiplier=1``: a host holds no more runs than
  it has slots (acknowledging at the start would let a busy host reserve as many again,
  hidden from the queue depth and kept from idle hosts). A message whose host died is
  restored by the broker, but it never starts twice: a host first claims the run in its
  channel (``SET NX``), and skips a run whose reader is gone or that was cancelled;
* no result backend: the output travels on the run's stream (``channel``), not as a
  Celery result;
* short socket timeouts and no publish retries: with the broker down a request gets its
  503 within about two seconds instead of hanging.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from clinvk.core.config import Config

#: How long connecting to (or a reply from) the broker may take before it counts as down.
BROKER_TIMEOUT_SECS = 2.0


def make_app(config: Config) -> Celery:
    execution = config.execution
    app = Celery("clinvk", broker=execution.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_timeout=BROKER_TIMEOUT_SECS,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(),
        task_default_queue=f"{execution.queue_prefix}.default",
    )
    return app


def transport_options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": BROKER_TIMEOUT_SECS,
        "socket_timeout": BROKER_TIMEOUT_SECS + 10,  # above the worker's BRPOP wait
        "visibility_timeout": 3600,
    }
