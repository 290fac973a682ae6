"""The Celery application factory: :func:`make_app` builds the app a worker, beat or Flower
runs. Importing this module creates nothing; the worker entry point
(``celery -A workers.worker worker -Q <queue>``, workers/worker.py) is the one place that
builds the process's app. Queue and task names: workers/queues.py; the configuration it
shares with processes that only send: workers/celery_config.py.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.celery_config import APP_NAME, celery_config
from workers.queues import (
    FINALIZE_QUEUE,
    INGEST_QUEUE,
    NIGHTLY_TICK_TASK,
    RECONCILE_STALLED_TASK,
    RETRAIN_TICK_TASK,
)
from workers.settings import Settings

TASK_MODULES = ["workers.tasks"]  # imported by `celery worker` / `celery beat` at start


def make_app(settings: Settings) -> Celery:
    """The app with ``settings``: the shared configuration, the task modules (registered on
    it when a worker starts), beat's schedule, and ``conf.batch_router_settings``."""
    broker = settings.broker() if settings.distributed else None
    app = Celery(APP_NAME, broker=broker, include=TASK_MODULES)
    app.conf.update(celery_config(settings), beat_schedule=beat_schedule(settings))
    app.conf.batch_router_settings = settings
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The stalled-job sweep, and the nightly tick when schedules are configured (beat
    reads the file when it starts), and the retrain tick when the file lists ``retrain:``
    rounds (``workers/retrain_beat.py``)."""
    schedule: dict[str, dict[str, Any]] = {
        "reconcile-stalled-jobs": {
            "task": RECONCILE_STALLED_TASK,
            "schedule": 600.0,
            "options": {"queue": INGEST_QUEUE},
        }
    }
    if settings.schedule is not None:
        from workers.nightly import schedule_args

        schedule["nightly-tick"] = {
            "task": NIGHTLY_TICK_TASK,
            "schedule": settings.nightly_tick_s,
            "args": [schedule_args(settings.schedule)],
            # finalize: a small queue, always served, so a backlog of ingest messages
            # cannot hold ticks back until they expire; a late tick is harmless (the
            # window claim starts each window once), so it may wait several periods
            "options": {"queue": FINALIZE_QUEUE, "expires": 10 * settings.nightly_tick_s},
        }
        from workers.retrain_beat import retrain_args

        rounds = retrain_args(settings.schedule)
        if rounds:  # champion / challenger rounds: on ingest, they train for a while
            schedule["retrain-tick"] = {
                "task": RETRAIN_TICK_TASK,
                "schedule": settings.nightly_tick_s,
                "args": [rounds],
                "options": {"queue": INGEST_QUEUE, "expires": 10 * settings.nightly_tick_s},
            }
    return schedule
