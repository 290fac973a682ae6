"""Provider batch mode's two stages, as the executors call them: ``dispatch`` of a batch
tier (:func:`submit`) and a poll task (:func:`collect`). The engine is
``workers/batches/engine.py`` (submitting) and ``workers/batches/collect.py`` (collecting).
"""

from __future__ import annotations

from typing import Any

from routing.plan import JobContext
from workers.batches.collect import Collector
from workers.batches.engine import MIN_POLL_S, TierBatchEngine
from workers.runtime import Runtime, Sink


def submit(rt: Runtime, ctx: JobContext, batch: dict[str, Any], sink: Sink) -> None:
    """``dispatch`` of a batch tier: plan and submit round 1, then hand polling to the sink."""
    engine = TierBatchEngine(rt, ctx, int(batch["chunk"]), str(batch["tier"]))
    engine.start(batch)
    sink.poll(ctx, engine.chunk, engine.tier.name, min(MIN_POLL_S, engine.tier.batch.poll_s))


def collect(rt: Runtime, ctx: JobContext, chunk: int, tier: str, sink: Sink) -> float | None:
    """One look at a tier batch's provider batches (a poll task): the seconds until the
    next look, or None when its result part is written. The job counts as progressing
    while its provider batches run (beat's stalled-job sweep leaves it)."""
    rt.tracker.touch(ctx.job_id)
    return Collector(TierBatchEngine(rt, ctx, chunk, tier)).step(sink)
