"""A deterministic error inside a job fails the job once, with its reason, wherever the
job is seen (tracker, ``manifest.json``, ``_job/failed.json``); reconcile never runs it
again; an infrastructure error that keeps dead-lettering fails it after a bound (issue 13,
finding 4, job level). In-process: local files, the simulated provider in a thread, the
memory tracker and a real Redis tracker. The real fleet: tests/e2e/test_hardening_job_failure.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis

from routing.errors import InputError, JobFailedError, StorageError
from routing.plan import ChunkRef, JobContext, JobPlan
from tests.cli import assert_clean_error, clean_env, run_cli
from tests.workers.failing import TRUNCATED, corrupt_after_footer, prompts_table
from tests.workers.pipeline import make_settings, plan_job, runtime
from workers import finalize, layout, local, stages
from workers.jobstate import JobTracker, MemoryJobTracker, RedisJobTracker
from workers.reconcile import reconcile, stalled_jobs
from workers.runtime import Runtime
from workers.sim.server import SimServer


def _failing_job(tmp_path: Path, sim: SimServer) -> tuple[Runtime, JobPlan]:
    rt = runtime(make_settings(sim))
    source = tmp_path / "in" / "p.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(corrupt_after_footer())
    return rt, plan_job(rt, str(source), tmp_path / "out", rows_per_chunk=20)


def _json(rt: Runtime, uri: str) -> dict[str, Any]:
    return dict(json.loads(rt.storage.read_bytes(uri)))


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None:
        self.sent.append(("ingest", chunk.chunk))

    def finalize(self, ctx: JobContext) -> None:
        self.sent.append(("finalize", None))


# ---------------------------------------------------------------- local executor


def test_a_local_job_with_an_unreadable_row_group_fails_once_with_its_reason(
    tmp_path: Path, sim: SimServer
) -> None:
    rt, plan = _failing_job(tmp_path, sim)
    ctx = plan.context
    assert len(plan.chunks) == 2  # the first chunk is readable, the second is not
    with pytest.raises(JobFailedError) as info:
        local.run_job(rt, plan)
    message = str(info.value)
    assert message.startswith(f"job {ctx.job_id} failed: ") and "\n" not in message
    assert "chunk 1" in message and TRUNCATED in message

    status = rt.tracker.status(ctx.job_id)
    assert status is not None and status.state == "failed"
    assert status.error is not None and TRUNCATED in status.error
    assert status.describe() == message

    manifest = _json(rt, layout.manifest(ctx.job_root))
    assert manifest["state"] == "failed" and manifest["complete"] is False
    assert manifest["error"] == status.error
    assert manifest["failed_in"]["chunk"] == 1
    assert manifest["rows_in"] == 40 and manifest["input_uri"] == plan.input_uri
    record = finalize.failure_of(rt.storage, ctx.job_root)
    assert record is not None and record["error"] == status.error
    assert not rt.storage.exists(layout.success(ctx.job_root))


def test_batch_router_run_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(corrupt_after_footer(tag="cli"))
    env = clean_env(BATCH_ROUTER_ROWS_PER_CHUNK="20")
    proc = run_cli(
        "run", "bad.parquet", "--output", "out", "--job-id", "broken", cwd=tmp_path, env=env
    )
    assert_clean_error(proc, "job broken failed", "chunk 1", TRUNCATED, code=1)
    manifest = json.loads((tmp_path / "out" / "job_id=broken" / "manifest.json").read_text())
    assert manifest["state"] == "failed" and TRUNCATED in manifest["error"]


def test_a_finished_job_keeps_a_manifest_saying_it_succeeded(
    tmp_path: Path, sim: SimServer
) -> None:
    rt = runtime(make_settings(sim))
    source = tmp_path / "in" / "p.parquet"
    source.parent.mkdir(parents=True)
    pq.write_table(prompts_table(20, "ok"), source)
    plan = plan_job(rt, str(source), tmp_path / "out")
    manifest = local.run_job(rt, plan)
    assert manifest["state"] == "succeeded" and "error" not in manifest
    assert rt.tracker.status(plan.context.job_id).state == "succeeded"  # type: ignore[union-attr]


# ---------------------------------------------------------------- reconcile


def test_reconcile_never_runs_a_failed_job_again(tmp_path: Path, sim: SimServer) -> None:
    rt, plan = _failing_job(tmp_path, sim)
    ctx = plan.context
    with pytest.raises(JobFailedError):
        local.run_job(rt, plan)
    error = rt.tracker.status(ctx.job_id).error  # type: ignore[union-attr]

    sink = RecordingSink()
    report = reconcile(rt, ctx.job_root, sink)
    assert (report.state, report.error, sink.sent) == ("failed", error, [])

    # Redis lost: the durable record is found, the job is not registered as running again
    fresh = Runtime(settings=rt.settings, storage=rt.storage, tracker=MemoryJobTracker())
    later = time.time() + 10**6
    assert stalled_jobs(fresh, [str(tmp_path / "out")], stall_s=0, now=later) == []
    report = reconcile(fresh, ctx.job_root, sink)
    assert (report.state, report.error, sink.sent) == ("failed", error, [])
    status = fresh.tracker.status(ctx.job_id)
    assert status is not None and (status.state, status.error) == ("failed", error)
    assert stalled_jobs(fresh, [str(tmp_path / "out")], stall_s=0, now=later) == []


def test_a_failure_record_of_an_earlier_plan_does_not_fail_the_job(
    tmp_path: Path, sim: SimServer
) -> None:
    """The job id was planned again (resubmitted): the old record is not this job's."""
    rt, plan = _failing_job(tmp_path, sim)
    root = plan.context.job_root
    stale = {"job_id": plan.context.job_id, "error": "x", "plan_created_at": "2001-01-01T00:00:00"}
    rt.storage.write_bytes(finalize.failure_uri(root), json.dumps(stale).encode())
    assert finalize.failure_of(rt.storage, root) is None
    report = reconcile(rt, root, RecordingSink())
    assert report.state == "resumed" and report.reingested == [0, 1]


# ---------------------------------------------------------------- the tracker


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def tracker(request: pytest.FixtureRequest) -> Iterator[JobTracker]:
    if request.param == "memory":
        yield MemoryJobTracker()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    try:
        yield RedisJobTracker(client, 3600)
    finally:
        client.close()


def _new_job(tracker: JobTracker) -> str:
    job_id = f"job-{uuid.uuid4().hex[:10]}"
    tracker.register(job_id, {"total_chunks": 2, "rows_total": 10})
    return job_id


def test_the_first_failure_wins_and_an_ended_job_stays_ended(tracker: JobTracker) -> None:
    job = _new_job(tracker)
    assert tracker.state(job) == "running"
    assert tracker.fail(job, "ingest chunk 1: ArrowInvalid: bad page", chunk=1) is True
    assert tracker.fail(job, "dispatch chunk 0 tier fast: later", chunk=0) is False
    status = tracker.status(job)
    assert status is not None and tracker.state(job) == "failed"
    assert status.error == "ingest chunk 1: ArrowInvalid: bad page"
    assert status.meta["chunk"] == "1"
    assert status.describe() == f"job {job} failed: ingest chunk 1: ArrowInvalid: bad page"

    done = _new_job(tracker)
    tracker.set_state(done, "succeeded")
    assert tracker.fail(done, "a stale redelivered task") is False
    assert tracker.state(done) == "succeeded" and tracker.status(done).error is None  # type: ignore[union-attr]
    assert tracker.state(f"never-{uuid.uuid4().hex}") is None


def test_dead_letters_are_counted_per_unit_of_work(tracker: JobTracker) -> None:
    job = _new_job(tracker)
    ingest0 = {"task": "ingest", "chunk": 0, "tier": None, "error": "StorageError: x"}
    fast0 = {"task": "dispatch", "chunk": 0, "tier": "fast", "error": "StorageError: y"}
    assert tracker.dead_letter(job, ingest0) == 1
    assert tracker.dead_letter(job, fast0) == 1
    assert tracker.dead_letter(job, {**ingest0, "error": "OSError: z"}) == 2
    assert tracker.dead_letter(job, {**fast0, "chunk": 1}) == 1
    assert len(tracker.dead_letters(job)) == 4


# ---------------------------------------------------------------- the Celery task hooks


@pytest.fixture
def fleet_runtime(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, dict[str, Any]]]:
    """``workers.tasks``' runtime on a real Redis tracker and local files, and one job's
    context registered in it."""
    from workers import tasks

    rt = Runtime(
        settings=make_settings(),
        storage=runtime(make_settings()).storage,
        tracker=RedisJobTracker.from_url(redis_url, 3600),
    )
    monkeypatch.setattr(tasks, "runtime", lambda: rt)
    source = tmp_path / "in" / "p.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(corrupt_after_footer())
    job_id = f"hook-{uuid.uuid4().hex[:8]}"
    plan = plan_job(rt, str(source), tmp_path / "out", rows_per_chunk=20, job_id=job_id)
    rt.tracker.register(job_id, {"total_chunks": 2, "job_root": plan.context.job_root})
    yield rt, {"ctx": plan.context.model_dump(), "chunk": plan.chunks[1].model_dump()}


@pytest.mark.integration
def test_a_permanent_error_in_a_task_fails_the_job_at_once(
    fleet_runtime: tuple[Runtime, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import tasks

    rt, msg = fleet_runtime
    job_id, root = msg["ctx"]["job_id"], msg["ctx"]["job_root"]
    exc = InputError("s3://b/in/p.parquet: column 'prompt' is missing")
    tasks.ingest.on_failure(exc, "t-1", [msg["ctx"], msg["chunk"], None], {}, None)
    status = rt.tracker.status(job_id)
    assert status is not None and status.state == "failed"
    assert status.error == "ingest chunk 1: InputError: " + str(exc)
    assert rt.tracker.dead_letters(job_id) == []  # not a dead letter: nothing to re-run
    assert _json(rt, layout.manifest(root))["error"] == status.error
    assert finalize.failure_of(rt.storage, root)["failed_in"]["task"] == "ingest"  # type: ignore[index]

    # a task of the failed job still queued does nothing
    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a failed job's task ran")

    monkeypatch.setattr(stages, "ingest", must_not_run)
    monkeypatch.setattr(stages, "dispatch", must_not_run)
    tasks.ingest.run(msg["ctx"], msg["chunk"], None)
    tasks.dispatch.run(msg["ctx"], {"chunk": 1, "tier": "fast", "rows": 1, "inline": ""})


@pytest.mark.integration
def test_a_unit_dead_lettered_three_times_fails_the_job(
    fleet_runtime: tuple[Runtime, dict[str, Any]],
) -> None:
    from workers import tasks

    rt, msg = fleet_runtime
    job_id = msg["ctx"]["job_id"]
    batch = {"chunk": 1, "tier": "fast", "rows": 3, "staged": "s3://b/x.parquet"}
    exc = StorageError("cannot write s3://b/out/part.parquet: connection reset")
    for n in range(1, tasks.DEAD_LETTERS_BEFORE_FAILING):
        tasks.dispatch.on_failure(exc, f"t-{n}", [msg["ctx"], batch], {}, None)
        assert rt.tracker.state(job_id) == "running"  # reconcile re-enqueues it
        assert len(rt.tracker.dead_letters(job_id)) == n
    tasks.dispatch.on_failure(exc, "t-last", [msg["ctx"], batch], {}, None)
    status = rt.tracker.status(job_id)
    assert status is not None and status.state == "failed"
    limit = tasks.DEAD_LETTERS_BEFORE_FAILING
    assert status.error == (
        f"dispatch chunk 1 tier fast: dead-lettered {limit} times; last: StorageError: {exc}"
    )
    assert finalize.failure_of(rt.storage, msg["ctx"]["job_root"]) is not None


@pytest.mark.integration
def test_reconcile_failing_for_good_fails_the_job_so_beat_stops_sending_it(
    fleet_runtime: tuple[Runtime, dict[str, Any]],
) -> None:
    from workers import tasks

    rt, msg = fleet_runtime
    job_id, root = msg["ctx"]["job_id"], msg["ctx"]["job_root"]
    tasks.reconcile.on_failure(StorageError("store down"), "t-1", [root], {}, None)
    assert rt.tracker.state(job_id) == "running"  # infrastructure: the next sweep retries
    gone = InputError(f"{root}: no job plan ({root}/_job/plan.json); is this a job folder?")
    tasks.reconcile.on_failure(gone, "t-2", [root], {}, None)
    status = rt.tracker.status(job_id)
    assert status is not None and status.state == "failed"
    assert status.error == f"reconcile: InputError: {gone}"
    stalled = stalled_jobs(rt, [str(Path(root).parent)], stall_s=0, now=time.time() + 10**6)
    assert root not in stalled  # other tests' jobs may share the Redis and the folder
