"""Distributed submission: register the job in Redis and enqueue one ingest per chunk."""

from __future__ import annotations

import time
from collections.abc import Callable

from routing.errors import ConfigError
from routing.names import validate_job_id
from routing.plan import ChunkRef, JobContext, JobPlan
from workers.app import FINALIZE_QUEUE, INGEST_QUEUE, make_app
from workers.jobstate import JobStatus, RedisJobTracker
from workers.reconcile import Reconciled
from workers.settings import Settings

FINAL_STATES = ("succeeded", "failed")


def tracker(settings: Settings) -> RedisJobTracker:
    if settings.redis_url is None and settings.broker_url is None:
        raise ConfigError(
            "no Redis configured: set BATCH_ROUTER_BROKER_URL (or BATCH_ROUTER_REDIS_URL)"
        )
    return RedisJobTracker.from_url(settings.state_redis(), settings.job_ttl_s)


def submit(settings: Settings, plan: JobPlan) -> None:
    """Register ``plan`` and enqueue its chunk references on ``ingest``."""
    ctx = plan.context
    tracker(settings).register(
        ctx.job_id,
        {
            "total_chunks": ctx.total_chunks,
            "rows_total": plan.rows_total,
            "job_root": ctx.job_root,
            "input_uri": plan.input_uri,
            "created_at": plan.created_at,
            "tenant": ctx.tenant or "",
        },
    )
    app = make_app(settings)
    message = ctx.model_dump()
    with app.producer_or_acquire() as producer:
        for chunk in plan.chunks:
            app.send_task(
                "ingest", args=[message, chunk.model_dump()], queue=INGEST_QUEUE, producer=producer
            )
        if not plan.chunks:  # zero rows: nothing will complete a chunk, finalize right away
            app.send_task("finalize", args=[message], queue=FINALIZE_QUEUE, producer=producer)


def wait(
    settings: Settings,
    job_id: str,
    on_progress: Callable[[JobStatus], None],
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> JobStatus:
    """Poll the job until it succeeds or fails (or ``timeout_s`` passes)."""
    jobs = tracker(settings)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = jobs.status(job_id)
        if status is None:
            raise KeyError(f"unknown job {job_id}")
        on_progress(status)
        if status.state in FINAL_STATES:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not finished after {timeout_s} s")
        time.sleep(poll_s)


class SendSink:
    """Sends ``ingest`` / ``finalize`` messages by task name (the producer does not import
    the worker tasks)."""

    def __init__(self, settings: Settings) -> None:
        self._app = make_app(settings)

    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None:
        args = [ctx.model_dump(), chunk.model_dump(), only]
        self._app.send_task("ingest", args=args, queue=INGEST_QUEUE)

    def finalize(self, ctx: JobContext) -> None:
        self._app.send_task("finalize", args=[ctx.model_dump()], queue=FINALIZE_QUEUE)


def reconcile(settings: Settings, job_root: str) -> Reconciled:
    """Rebuild a job's Redis state from the object store and re-enqueue what is missing.
    The folder's job id is checked before anything is read (the plan's, when it is loaded:
    routing.plan.JobContext)."""
    if "job_id=" in job_root:
        validate_job_id(job_root.rstrip("/").rsplit("job_id=", 1)[1], "JOB_PATH")
    from workers.reconcile import reconcile as reconcile_job
    from workers.stages import Runtime
    from workers.storage import Storage

    rt = Runtime(settings=settings, storage=Storage(settings.s3), tracker=tracker(settings))
    return reconcile_job(rt, job_root, SendSink(settings))
