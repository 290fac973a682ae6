"""The Celery application: ``celery -A workers.app worker -Q <queue>``.

Queues: ``ingest``, one ``tier.<name>`` per policy tier, ``finalize``. Workers are
started per queue so each tier scales on its own. Settings follow DESIGN.md: JSON only,
late acks, a killed worker's task redelivered, prefetch 1, one visibility timeout for
broker and backend, no results stored (outputs go to the object store).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from routing.errors import ConfigError
from workers import logs
from workers.settings import Settings

INGEST_QUEUE = "ingest"
FINALIZE_QUEUE = "finalize"


def tier_queue(tier: str) -> str:
    return f"tier.{tier}"


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """``task_routes`` router: dispatch goes to its batch's tier queue."""
    if name == "dispatch":
        batch = kwargs.get("batch") if kwargs else args[1]
        return {"queue": tier_queue(batch["tier"])}
    if name in (INGEST_QUEUE, FINALIZE_QUEUE):
        return {"queue": name}
    return None


def make_app(settings: Settings) -> Celery:
    broker = settings.broker() if settings.distributed else None
    app = Celery("batch_router", broker=broker, include=["workers.tasks"])
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_routes=(route_task,),
        task_default_queue=INGEST_QUEUE,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile-stalled-jobs": {
                "task": "reconcile_stalled",
                "schedule": 600.0,
                "options": {"queue": INGEST_QUEUE},
            }
        },
    )
    if settings.schedule is not None:  # nightly jobs: beat reads the file when it starts
        from workers.nightly import schedule_args

        app.conf.beat_schedule["nightly-tick"] = {
            "task": "nightly_tick",
            "schedule": settings.nightly_tick_s,
            "args": [schedule_args(settings.schedule)],
            # finalize: a small queue, always served, so a backlog of ingest messages
            # cannot hold ticks back until they expire; a late tick is harmless (the
            # window claim starts each window once), so it may wait several periods
            "options": {"queue": FINALIZE_QUEUE, "expires": 10 * settings.nightly_tick_s},
        }
    app.conf.batch_router_settings = settings
    return app


settings = Settings()
app = make_app(settings)
logs.install(app)  # JSON logs with job_id / chunk / tier in every celery process (workers/logs.py)


@signals.worker_init.connect
def _require_broker(**_: Any) -> None:
    if not settings.distributed:
        raise ConfigError("no broker configured: set BATCH_ROUTER_BROKER_URL=redis://…")
