"""Thin Celery tasks: decode the message, call the stage, route what it produces.

Celery retries only infrastructure errors (object store, Redis, broker, time limits:
``_INFRA``); provider errors are handled inside dispatch by the retry policy and end up in
the row's ``error``. How a job task that fails for good ends (``_JobTask.on_failure``):

- any other exception is deterministic — bad data found after planning, an input that no
  longer matches its plan, a policy that no longer loads, a bug: retrying cannot help, so
  the job fails at once, with the reason (``workers.finalize.fail_job``);
- an infrastructure error that outlived its retries is a dead letter: reconcile (beat's
  sweep) re-enqueues the work; the ``DEAD_LETTERS_BEFORE_FAILING``-th dead letter of the
  same unit of work (task, chunk, tier) fails the job with the last error.

A queued task of a job that has failed does nothing.

The tasks are ``shared_task``s: defined here without an app, they are registered on the
app the process runs — the worker's (``celery -A workers.worker``, whose ``make_app``
lists this module in ``include``) — and read their settings from it. Importing this
module creates no app; only a worker (or beat) imports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import redis
from celery import Task, current_app, shared_task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.exceptions import OperationalError

from routing.errors import StorageError
from routing.plan import ChunkRef, JobContext
from workers import connections, logs, metrics, stages
from workers.batches import polls
from workers.batches import stage as batch_stage
from workers.finalize import fail_job, failure_reason
from workers.finalize import finalize as finalize_job
from workers.jobstate import RedisJobTracker
from workers.queues import (
    COLLECT_TASK,
    DISPATCH_TASK,
    FINALIZE_QUEUE,
    FINALIZE_TASK,
    INGEST_QUEUE,
    INGEST_TASK,
    NIGHTLY_TICK_TASK,
    RECONCILE_STALLED_TASK,
    RECONCILE_TASK,
    RETRAIN_TICK_TASK,
    tier_queue,
)
from workers.reconcile import reconcile as reconcile_job
from workers.reconcile import stalled_jobs
from workers.redact import redact_error
from workers.runtime import Runtime
from workers.settings import Settings
from workers.storage import Storage

log = logging.getLogger("batch_router.tasks")


def _task(**options: Any) -> Callable[[Callable[..., Any]], Task]:
    """Celery's ``shared_task``, typed (Celery ships no annotations): the decorated function
    becomes the registered :class:`celery.Task` of the app the worker runs."""
    return cast(Callable[[Callable[..., Any]], Task], shared_task(**options))


# Infrastructure: the object store, Redis, the broker, a time limit (none is set by default).
_INFRA = (
    StorageError,
    redis.RedisError,
    OperationalError,
    OSError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
)
DEAD_LETTERS_BEFORE_FAILING = 3  # per unit of work; each after max_retries Celery retries
_RETRY = {
    "autoretry_for": _INFRA,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
    "acks_late": True,
}


def settings() -> Settings:
    """The settings of the app this process runs (``workers.worker``: ``make_app`` puts
    them in its ``conf``)."""
    found: Settings = current_app.conf.batch_router_settings
    return found


@cache
def runtime() -> Runtime:
    """This worker process's resources (built once, on first use)."""
    s = settings()
    return Runtime(settings=s, storage=Storage(s.s3), tracker=RedisJobTracker.for_settings(s))


class CelerySink:
    """Routed batches go to their tier queue; ingest and finalize to theirs."""

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        dispatch.apply_async(
            args=[ctx.model_dump(), batch],
            queue=tier_queue(batch["tier"]),
            argsrepr=_describe(ctx.job_id, batch),  # events/Flower: not the inline rows
        )
        metrics.observe_routed(batch["tier"], int(batch.get("rows", 0)))

    def finalize(self, ctx: JobContext) -> None:
        finalize.apply_async(args=[ctx.model_dump()], queue=FINALIZE_QUEUE)

    def poll(self, ctx: JobContext, chunk: int, tier: str, delay_s: float) -> None:
        """Start a new poll chain for a tier batch in batch mode (it supersedes any other)."""
        chain = polls.new_chain()
        s = settings()
        polls.take(connections.state_client(s), ctx.job_id, chunk, tier, chain, s.job_ttl_s)
        _send_collect(ctx.model_dump(), {"chunk": chunk, "tier": tier, "chain": chain}, delay_s)

    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None:
        ingest.apply_async(args=[ctx.model_dump(), chunk.model_dump(), only], queue=INGEST_QUEUE)


class _JobTask(Task):  # type: ignore[misc]
    """A job task that failed for good fails its job, or is a dead letter (module doc)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # type: ignore[no-untyped-def]
        ctx = args[0] if args and isinstance(args[0], dict) else {}
        job_id, root = ctx.get("job_id"), ctx.get("job_root")
        if not job_id or not root:
            return
        detail = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        failed_in = {"task": self.name, "chunk": detail.get("chunk"), "tier": detail.get("tier")}
        try:
            _end(job_id, root, failed_in, exc, task_id)
        except Exception:  # the broker / Redis / store may be what failed
            log.exception("could not record the failure of job %s (%s)", job_id, failed_in)


def _end(
    job_id: str, root: str, failed_in: dict[str, Any], exc: BaseException, task_id: str
) -> None:
    rt = runtime()
    note = ""
    if isinstance(exc, _INFRA):
        entry = {
            **failed_in,
            "task_id": task_id,
            "error": redact_error(f"{type(exc).__name__}: {exc}", 500),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        count = rt.tracker.dead_letter(job_id, entry)
        if count < DEAD_LETTERS_BEFORE_FAILING:
            return  # reconcile re-enqueues it
        note = f"dead-lettered {count} times; last"
    reason = failure_reason(exc, failed_in, note)
    if fail_job(rt, job_id, root, reason, failed_in):
        log.error("job %s failed: %s", job_id, reason)


def _failed(ctx: dict[str, Any]) -> bool:
    """The job has failed: its tasks still queued do nothing."""
    if runtime().tracker.state(ctx["job_id"]) != "failed":
        return False
    log.info("job %s has failed: task skipped", ctx["job_id"])
    return True


@_task(name=INGEST_TASK, base=_JobTask, **_RETRY)
def ingest(ctx: dict[str, Any], chunk: dict[str, Any], only: list[str] | None = None) -> None:
    if not _failed(ctx):
        stages.ingest(runtime(), JobContext(**ctx), ChunkRef(**chunk), CelerySink(), only)


def _describe(job_id: str, batch: dict[str, Any]) -> str:
    where = "staged" if batch.get("staged") else "inline"
    return (
        f"(job_id={job_id!r}, chunk={batch.get('chunk')}, tier={batch.get('tier')!r}, "
        f"rows={batch.get('rows')}, {where})"
    )


def _dispatch_name(task: Task, args: Any, kwargs: Any, options: Any) -> str:
    """``dispatch[<tier>]`` in worker logs, events and Flower (the task stays ``dispatch``)."""
    tier = logs.task_fields(DISPATCH_TASK, args, kwargs).get("tier")
    return f"dispatch[{tier}]" if tier else "dispatch"


@_task(name=DISPATCH_TASK, base=_JobTask, shadow_name=_dispatch_name, **_RETRY)
def dispatch(ctx: dict[str, Any], batch: dict[str, Any]) -> None:
    if not _failed(ctx):
        stages.dispatch(runtime(), JobContext(**ctx), batch, CelerySink())


def _send_collect(ctx: dict[str, Any], batch: dict[str, Any], delay_s: float) -> None:
    collect.apply_async(args=[ctx, batch], countdown=delay_s, queue=tier_queue(batch["tier"]))


def _collect_name(task: Task, args: Any, kwargs: Any, options: Any) -> str:
    """``collect[<tier>]`` in worker logs, events and Flower."""
    tier = logs.task_fields(COLLECT_TASK, args, kwargs).get("tier")
    return f"collect[{tier}]" if tier else "collect"


@_task(name=COLLECT_TASK, base=_JobTask, shadow_name=_collect_name, **_RETRY)
def collect(ctx: dict[str, Any], batch: dict[str, Any]) -> None:
    """One look at a tier batch's provider batches (workers/batches/engine.py); it sends
    the next look itself, with a countdown, until the result part is written. A chain no
    longer owning the tier batch (workers/batches/polls.py) stops."""
    if _failed(ctx):
        return
    rt = runtime()
    chunk, tier, chain = int(batch["chunk"]), str(batch["tier"]), str(batch["chain"])
    client = connections.state_client(rt.settings)
    if not polls.owns(client, ctx["job_id"], chunk, tier, chain, rt.settings.job_ttl_s):
        log.info("job %s chunk %s tier %s: poll chain superseded", ctx["job_id"], chunk, tier)
        return
    job = JobContext(**ctx)
    delay = batch_stage.collect(rt, job, chunk, tier, CelerySink())
    if delay is not None:
        _send_collect(ctx, batch, delay)


@_task(name=FINALIZE_TASK, base=_JobTask, **_RETRY)
def finalize(ctx: dict[str, Any]) -> None:
    if not _failed(ctx):
        finalize_job(runtime(), JobContext(**ctx))


class _ReconcileTask(Task):  # type: ignore[misc]
    """Reconcile failing deterministically (the job's plan gone or unreadable) fails the job,
    so that beat's sweep does not send it again every period."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # type: ignore[no-untyped-def]
        root = str(args[0]).rstrip("/") if args else ""
        if isinstance(exc, _INFRA) or "job_id=" not in root:
            return
        job_id = root.rsplit("job_id=", 1)[1]
        failed_in = {"task": self.name}
        try:
            fail_job(runtime(), job_id, root, failure_reason(exc, failed_in), failed_in)
        except Exception:
            log.exception("could not record the failure of job %s (reconcile)", job_id)


@_task(name=RECONCILE_TASK, base=_ReconcileTask, **_RETRY)
def reconcile(job_root: str) -> dict[str, Any]:
    """Re-enqueue what a job is missing (``batch-router reconcile``, or beat)."""
    return reconcile_job(runtime(), job_root, CelerySink()).to_dict()


@_task(name=RECONCILE_STALLED_TASK)
def reconcile_stalled(stall_s: float = 1800.0) -> list[str]:
    """Beat's periodic sweep (``workers.reconcile.stalled_jobs``): reconcile every running
    job that has not progressed for ``stall_s`` (lost messages, a dead-lettered task), and
    every unfinished job folder under ``BATCH_ROUTER_OUTPUT`` whose Redis state is gone."""
    rt = runtime()
    roots = [rt.settings.output] if rt.settings.output else []
    swept = stalled_jobs(rt, roots, stall_s, time.time())
    for job_root in swept:
        reconcile.apply_async(args=[job_root], queue=INGEST_QUEUE)
    return swept


# ---------------------------------------------------------------- log context and metrics

_OUTCOMES = {"SUCCESS": "success", "RETRY": "retry", "FAILURE": "failure"}
_started: dict[str, tuple[float, Any]] = {}


def _task_started(task_id: str, task: Task, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    fields = logs.task_fields(task.name, args, kwargs)
    token = logs.bind(task=task.name, task_id=task_id, **fields)
    _started[task_id] = (time.perf_counter(), token)


def _task_finished(
    task_id: str, task: Task, args: Any = None, kwargs: Any = None, state: Any = None, **_: Any
) -> None:
    started, token = _started.pop(task_id, (None, None))
    logs.unbind(token)
    if started is not None:
        tier = logs.task_fields(task.name, args, kwargs).get("tier")
        outcome = _OUTCOMES.get(str(state), str(state or "unknown").lower())
        metrics.observe_task(task.name, tier, time.perf_counter() - started, outcome)


signals.task_prerun.connect(_task_started, weak=False)
signals.task_postrun.connect(_task_finished, weak=False)


@_task(name=NIGHTLY_TICK_TASK)
def nightly_tick(schedules: list[dict[str, Any]]) -> list[str]:
    """Beat's nightly tick (``workers.nightly``): submit each schedule's latest due window
    not yet claimed; returns the job ids submitted."""
    from workers import nightly

    return nightly.tick_task(settings(), schedules)


@_task(name=RETRAIN_TICK_TASK)
def retrain_tick(rounds: list[dict[str, Any]]) -> list[str]:
    """Beat's retrain tick (``workers.retrain_beat``): run each retraining round whose
    latest window is due and not claimed; returns the decisions."""
    from workers import retrain_beat

    return retrain_beat.tick_task(settings(), rounds)
