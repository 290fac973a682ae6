"""Distributed submission: register the job in Redis and enqueue one ingest per chunk;
wait for a job; resume one (``reconcile``).

Messages are sent by task name with a send-only Celery app
(``workers.celery_config.make_sender``): the worker's app and its tasks are never built or
imported here, nor the execution stack (stages, provider SDKs: seconds to import) before a
job is planned, so a rejected input fails fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from routing.errors import ConfigError
from routing.names import validate_job_id
from routing.plan import ChunkRef, JobContext, JobPlan
from routing.policy import Policy
from workers.celery_config import make_sender
from workers.jobs.plan import build_plan
from workers.jobstate import JobStatus, RedisJobTracker
from workers.queues import FINALIZE_QUEUE, FINALIZE_TASK, INGEST_QUEUE, INGEST_TASK
from workers.settings import Settings
from workers.storage import Storage

if TYPE_CHECKING:  # the execution stack takes seconds to import: only for reconcile
    from workers.reconcile import Reconciled

FINAL_STATES = ("succeeded", "failed")


def tracker(settings: Settings) -> RedisJobTracker:
    if settings.redis_url is None and settings.broker_url is None:
        raise ConfigError(
            "no Redis configured: set BATCH_ROUTER_BROKER_URL (or BATCH_ROUTER_REDIS_URL)"
        )
    return RedisJobTracker.for_settings(settings)


def submit_job(
    settings: Settings,
    policy: Policy,
    input_uri: str,
    output: str,
    job_id: str | None,
    tenant: str | None,
) -> JobPlan:
    """Plan the job (``workers.jobs.plan``) and submit it: what ``batch-router submit``,
    the drop folder and the nightly schedule do."""
    storage = Storage(settings.s3)
    plan = build_plan(storage, policy, input_uri, output, settings.rows_per_chunk, job_id, tenant)
    submit(settings, plan)
    return plan


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
    app = make_sender(settings)
    message = ctx.model_dump()
    with app.producer_or_acquire() as producer:
        for chunk in plan.chunks:
            args = [message, chunk.model_dump()]
            app.send_task(INGEST_TASK, args=args, queue=INGEST_QUEUE, producer=producer)
        if not plan.chunks:  # zero rows: nothing will complete a chunk, finalize right away
            app.send_task(FINALIZE_TASK, args=[message], queue=FINALIZE_QUEUE, producer=producer)


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
    """Sends ``ingest`` / ``finalize`` messages by task name (no worker tasks imported)."""

    def __init__(self, settings: Settings) -> None:
        self._app = make_sender(settings)

    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None:
        args = [ctx.model_dump(), chunk.model_dump(), only]
        self._app.send_task(INGEST_TASK, args=args, queue=INGEST_QUEUE)

    def finalize(self, ctx: JobContext) -> None:
        self._app.send_task(FINALIZE_TASK, args=[ctx.model_dump()], queue=FINALIZE_QUEUE)


def reconcile(settings: Settings, job_root: str) -> Reconciled:
    """Rebuild a job's Redis state from the object store and re-enqueue what is missing.
    The folder's job id is checked before anything is read (the plan's, when it is loaded:
    routing.plan.JobContext)."""
    if "job_id=" in job_root:
        validate_job_id(job_root.rstrip("/").rsplit("job_id=", 1)[1], "JOB_PATH")
    from workers.reconcile import reconcile as reconcile_job
    from workers.runtime import Runtime

    rt = Runtime(settings=settings, storage=Storage(settings.s3), tracker=tracker(settings))
    return reconcile_job(rt, job_root, SendSink(settings))
