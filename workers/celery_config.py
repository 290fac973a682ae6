"""The Celery configuration every process shares, and the app of processes that only send.

Settings follow DESIGN.md: JSON only, late acks, a killed worker's task redelivered,
prefetch 1, one visibility timeout for broker and backend, no results stored (outputs go
to the object store). The worker's app (``workers.app.make_app``) and the sender of the
CLI, the drop-folder watcher and beat's nightly tick (:func:`make_sender`) are built on the
same :func:`celery_config`, so a message is the same whoever sends it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.queues import INGEST_QUEUE, route_task
from workers.settings import Settings

APP_NAME = "batch_router"


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "task_routes": (route_task,),
        "task_default_queue": INGEST_QUEUE,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
    }


def make_sender(settings: Settings) -> Celery:
    """A Celery app that sends tasks by name (``send_task``) and runs none: no task
    modules, no beat schedule, and not made the process's current app (in a worker, beat's
    nightly tick sends with one while the worker's own app stays current)."""
    app = Celery(APP_NAME, broker=settings.broker(), set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
