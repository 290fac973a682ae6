"""``reconcile`` in-process (local files, memory tracker): lost dispatch messages and a
lost job state are repaired by re-enqueuing exactly the missing parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.workers.pipeline import (
    LossySink,
    make_settings,
    plan_job,
    results,
    runtime,
    write_input,
)
from workers import layout, local, stages
from workers.jobstate import MemoryJobTracker
from workers.reconcile import reconcile
from workers.runtime import Runtime
from workers.sim.server import SimServer

EASY, HARD = "What is 2 plus 2?", "Prove the theorem, derive each step and analyse trade-offs."


def table(n: int) -> pa.Table:
    return pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [(EASY if i % 2 else HARD) + f" ({i})" for i in range(n)],
        }
    )


def test_lost_batches_and_lost_state_are_repaired(tmp_path: Path, sim: SimServer) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "p.parquet", table(40))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10)
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    lossy = LossySink(rt, lose={"expert"})
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, lossy)
    written = rt.storage.list_files(layout.results_dir(ctx.job_root), ".parquet")
    assert written and not any(p.endswith("-expert.parquet") for p in written)
    assert lossy.finalized == 0 and not rt.storage.exists(layout.success(ctx.job_root))

    # Redis lost too: a fresh tracker knows nothing of the job
    fresh = Runtime(settings=rt.settings, storage=rt.storage, tracker=MemoryJobTracker())
    sink = LossySink(fresh, lose=set())
    report = reconcile(fresh, ctx.job_root, sink)
    assert report.registered and report.state == "resumed"
    assert report.reingested == []
    assert set(report.parts_resent) == {c.chunk for c in plan.chunks}
    assert all(parts == ["expert"] for parts in report.parts_resent.values())
    assert sink.ingested == [(c.chunk, ["expert"]) for c in plan.chunks]
    assert sink.finalized == 1
    out = results(fresh, plan)
    assert out.height == 40 and out["prompt_id"].n_unique() == 40
    assert set(out["status"]) == {"ok"} and "expert" in set(out["tier"])

    # a finished job: nothing to do
    again = reconcile(fresh, ctx.job_root, sink)
    assert again.state == "succeeded" and len(sink.ingested) == len(plan.chunks)


def test_a_chunk_never_ingested_is_ingested_again(tmp_path: Path, sim: SimServer) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "p.parquet", table(20))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10)
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    sink = LossySink(rt, lose=set())
    stages.ingest(rt, ctx, plan.chunks[0], sink)  # the second chunk's message was lost
    report = reconcile(rt, ctx.job_root, sink)
    assert report.reingested == [1] and not report.registered
    assert sink.finalized == 1 and results(rt, plan).height == 20


def test_sweep_finds_unfinished_jobs_under_the_output_root(tmp_path: Path, sim: SimServer) -> None:
    from workers.reconcile import stalled_jobs

    rt = runtime(make_settings(sim))
    out = tmp_path / "out"
    uri = write_input(tmp_path / "in" / "p.parquet", table(10))
    done = plan_job(rt, uri, out, job_id="done")
    local.run_job(rt, done)
    lost = plan_job(rt, uri, out, job_id="lost")  # planned, never ran, no Redis state
    stalled = plan_job(rt, uri, out, job_id="stalled")
    rt.tracker.register("stalled", {"total_chunks": 1, "job_root": stalled.context.job_root})
    fresh = plan_job(rt, uri, out, job_id="fresh")
    rt.tracker.register("fresh", {"total_chunks": 1, "job_root": fresh.context.job_root})
    rt.tracker.set_state("stalled", "running", updated_at=0)
    now = 10_000.0
    rt.tracker.set_state("fresh", "running", updated_at=now - 5)
    found = stalled_jobs(rt, [str(out)], stall_s=600, now=now)
    assert sorted(found) == sorted([lost.context.job_root, stalled.context.job_root])
