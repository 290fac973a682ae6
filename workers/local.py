"""The local (embedded) executor: the same stages in-process, no broker.

Chunks run on a small thread pool (provider calls are async inside each dispatch); a
routed batch is dispatched in the thread that routed it. Tier batches in batch mode are
then polled here until their parts are written (``_InlineSink.collect_all``). When the
policy's providers are the simulated one and no URL is configured, a simulated provider
is started in-process for the duration of the job.

A job that cannot finish — any exception in a chunk or in finalize; there are no retries
here — is failed once (``workers.finalize.fail_job``: the tracker, ``_job/failed.json`` and
a ``manifest.json`` saying why), the chunks not yet started are cancelled, and
:class:`~routing.errors.JobFailedError` carries the one-line reason to the caller.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from routing.errors import JobFailedError
from routing.plan import JobContext, JobPlan
from routing.policy import Policy
from workers import stages
from workers.batches import stage as batch_stage
from workers.finalize import fail_job, failure_reason, finalize
from workers.runtime import Runtime
from workers.settings import ProviderOverride, Settings
from workers.sim.config import SimConfig
from workers.sim.server import SimServer

log = logging.getLogger("batch_router.local")


class _Failed(Exception):
    """A stage raised: where it happened, and the exception."""

    def __init__(self, failed_in: dict[str, Any], exc: Exception) -> None:
        super().__init__(str(exc))
        self.failed_in, self.exc = failed_in, exc


class _InlineSink:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.finalize_due = False
        self.polls: list[tuple[float, int, str]] = []  # (due, chunk, tier): a heap
        self._lock = threading.Lock()

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        stages.dispatch(self._rt, ctx, batch, self)

    def finalize(self, ctx: JobContext) -> None:
        self.finalize_due = True

    def poll(self, ctx: JobContext, chunk: int, tier: str, delay_s: float) -> None:
        with self._lock:
            heapq.heappush(self.polls, (time.monotonic() + delay_s, chunk, tier))

    def collect_all(self, ctx: JobContext) -> None:
        """Poll every tier batch in batch mode until its part is written (this process is
        the job: it may wait between looks)."""
        while self.polls:
            due, chunk, tier = heapq.heappop(self.polls)
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                delay = batch_stage.collect(self._rt, ctx, chunk, tier, self)
            except Exception as exc:
                raise _Failed({"task": "collect", "chunk": chunk, "tier": tier}, exc) from exc
            if delay is not None:
                self.poll(ctx, chunk, tier, delay)


@contextlib.contextmanager
def simulated_providers(policy: Policy, settings: Settings) -> Iterator[Settings]:
    """Start one in-process simulated provider for every policy provider that is
    ``simulated`` and has no URL configured; yield settings pointing at it."""
    missing = [
        name
        for name, spec in policy.providers.items()
        if spec.simulated
        and not (settings.providers.get(name) and settings.providers[name].base_url)
    ]
    if not missing:
        yield settings
        return
    with SimServer(SimConfig()) as sim:
        providers = dict(settings.providers)
        for name in missing:
            # Each SDK's base-URL convention: OpenAI's ends in /v1, Anthropic's is the root.
            url = sim.url if policy.providers[name].kind == "anthropic" else sim.base_url
            providers[name] = ProviderOverride(base_url=url)
        yield settings.model_copy(update={"providers": providers})


def run_job(
    rt: Runtime,
    plan: JobPlan,
    threads: int = 2,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every chunk of ``plan``, then finalize; return the manifest. Raises
    :class:`JobFailedError` (the job marked failed, with its reason) if it cannot finish."""
    ctx = plan.context
    rt.tracker.register(
        ctx.job_id,
        {"total_chunks": ctx.total_chunks, "rows_total": plan.rows_total, "job_root": ctx.job_root},
    )
    try:
        sink = _run_chunks(rt, plan, threads, on_chunk)
        sink.collect_all(ctx)
        try:
            return finalize(rt, ctx)
        except Exception as exc:
            raise _Failed({"task": "finalize"}, exc) from exc
    except _Failed as failed:
        raise JobFailedError(_fail(rt, ctx, failed)) from failed.exc


def _run_chunks(
    rt: Runtime, plan: JobPlan, threads: int, on_chunk: Callable[[int], None] | None
) -> _InlineSink:
    """Ingest (and dispatch, inline) every chunk; on the first failure the chunks not yet
    started are cancelled and it is raised as :class:`_Failed`. Returns the sink, holding
    the polls of any tier batches in batch mode."""
    ctx, sink = plan.context, _InlineSink(rt)

    def one(chunk_index: int) -> int:
        chunk = plan.chunks[chunk_index]
        try:
            stages.ingest(rt, ctx, chunk, sink)
        except Exception as exc:
            raise _Failed({"chunk": chunk.chunk}, exc) from exc
        return chunk.take

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunk") as pool:
        futures = [pool.submit(one, i) for i in range(len(plan.chunks))]
        try:
            for future in as_completed(futures):
                rows = future.result()
                if on_chunk:
                    on_chunk(rows)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return sink


def _fail(rt: Runtime, ctx: JobContext, failed: _Failed) -> str:
    """Fail the job once with the reason; return the one line the caller shows."""
    reason = failure_reason(failed.exc, failed.failed_in)
    try:
        fail_job(rt, ctx.job_id, ctx.job_root, reason, failed.failed_in)
    except Exception as exc:  # the store may be what failed: the reason still gets out
        log.warning("job %s: could not record its failure: %r", ctx.job_id, exc)
        rt.tracker.fail(ctx.job_id, reason)
    status = rt.tracker.status(ctx.job_id)
    return status.describe() if status is not None else f"job {ctx.job_id} failed: {reason}"
