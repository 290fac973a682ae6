"""Thin Celery tasks: decode the message, call the stage, route what it produces.

Celery retries only infrastructure errors (object store, Redis); provider errors are
handled inside dispatch by the retry policy and end up in the row's ``error``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis

from routing.errors import StorageError
from routing.plan import ChunkRef, JobContext
from workers import stages
from workers.app import FINALIZE_QUEUE, app, settings, tier_queue
from workers.finalize import finalize as finalize_job
from workers.jobstate import RedisJobTracker
from workers.storage import Storage

_INFRA = (StorageError, redis.ConnectionError, redis.TimeoutError, OSError)
_RETRY = {
    "autoretry_for": _INFRA,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
    "acks_late": True,
}


@cache
def runtime() -> stages.Runtime:
    """This worker process's resources (built once, on first use)."""
    tracker = RedisJobTracker.from_url(settings.state_redis(), settings.job_ttl_s)
    return stages.Runtime(settings=settings, storage=Storage(settings.s3), tracker=tracker)


class CelerySink:
    """Routed batches go to their tier queue; the finalize signal to ``finalize``."""

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        dispatch.apply_async(args=[ctx.model_dump(), batch], queue=tier_queue(batch["tier"]))

    def finalize(self, ctx: JobContext) -> None:
        finalize.apply_async(args=[ctx.model_dump()], queue=FINALIZE_QUEUE)


@app.task(name="ingest", **_RETRY)
def ingest(ctx: dict[str, Any], chunk: dict[str, Any]) -> None:
    stages.ingest(runtime(), JobContext(**ctx), ChunkRef(**chunk), CelerySink())


@app.task(name="dispatch", **_RETRY)
def dispatch(ctx: dict[str, Any], batch: dict[str, Any]) -> None:
    stages.dispatch(runtime(), JobContext(**ctx), batch, CelerySink())


@app.task(name="finalize", **_RETRY)
def finalize(ctx: dict[str, Any]) -> None:
    finalize_job(runtime(), JobContext(**ctx))
