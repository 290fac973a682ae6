"""The worker entry point: ``celery -A workers.worker worker -Q <queue>`` (also ``beat``,
``flower``, ``inspect``).

The one module whose import builds the process's Celery app: Settings from the
environment, :func:`workers.app.make_app`, JSON logs with job_id / chunk / tier in every
Celery process (workers/logs.py), and a worker that refuses to start without a broker.
The tasks (workers/tasks.py, ``shared_task``) are registered on this app when the worker or
beat starts: ``make_app`` lists their module in ``include``, which Celery imports then.
Nothing else imports this module; code that only sends tasks uses
``workers.celery_config.make_sender``.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from routing.errors import ConfigError
from workers import logs
from workers.app import make_app
from workers.settings import Settings

settings = Settings()
app = make_app(settings)
logs.install(app)


def _require_broker(**_: Any) -> None:
    if not settings.distributed:
        raise ConfigError("no broker configured: set BATCH_ROUTER_BROKER_URL=redis://…")


signals.worker_init.connect(_require_broker)
