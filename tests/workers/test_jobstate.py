"""Job progress and the exactly-once finalize trigger: one behaviour suite, run against
the in-memory tracker and the Redis tracker (a real ``redis-server`` from the fixtures)."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from routing.errors import JobConflictError
from workers import keys
from workers.jobstate import JobTracker, MemoryJobTracker, RedisJobTracker

TTL = 3600


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def tracker(request: pytest.FixtureRequest) -> Iterator[JobTracker]:
    if request.param == "memory":
        yield MemoryJobTracker()
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        yield RedisJobTracker(client, TTL)
    finally:
        client.close()


def new_job(tracker: JobTracker, total_chunks: int, rows_total: int = 0, **meta: Any) -> str:
    job_id = f"job-{uuid.uuid4().hex[:10]}"
    tracker.register(job_id, {"total_chunks": total_chunks, "rows_total": rows_total, **meta})
    return job_id


def counts(ok: int = 0, failed: int = 0, cost: str = "0") -> dict[str, Any]:
    rows = {k: v for k, v in {"ok": ok, "failed": failed}.items() if v}
    return {"rows": rows, "cost_usd": cost, "baseline_cost_usd": cost}


# ---------------------------------------------------------------- sequential behaviour


def test_unknown_job_has_no_status(tracker: JobTracker) -> None:
    assert tracker.status(f"never-{uuid.uuid4().hex}") is None


def test_register_then_status(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=3, rows_total=120, job_root="/out/job_id=x")
    status = tracker.status(job)
    assert status is not None
    assert (status.job_id, status.state) == (job, "running")
    assert (status.total_chunks, status.chunks_done, status.rows_total) == (3, 0, 120)
    assert status.rows_by_status == {} and status.rows_done == 0
    assert status.cost_usd == 0
    assert status.meta["job_root"] == "/out/job_id=x"


def test_complete_is_true_exactly_once_for_the_last_part_of_the_last_chunk(
    tracker: JobTracker,
) -> None:
    job = new_job(tracker, total_chunks=2)
    tracker.expect(job, 0, ["fast", "expert", "rejected"])
    tracker.expect(job, 1, ["fast"])

    assert tracker.complete(job, 0, "fast", counts(ok=3), 2) is False
    assert tracker.complete(job, 1, "fast", counts(ok=2), 2) is False
    assert tracker.status(job).chunks_done == 1  # type: ignore[union-attr]
    assert tracker.complete(job, 0, "rejected", counts(failed=1), 2) is False
    assert tracker.status(job).chunks_done == 1  # type: ignore[union-attr]
    assert tracker.complete(job, 0, "expert", counts(ok=1), 2) is True
    assert tracker.status(job).chunks_done == 2  # type: ignore[union-attr]

    # redelivered parts (any of them, the last one too) never trigger again
    for chunk, part in [(0, "expert"), (0, "fast"), (1, "fast"), (0, "rejected")]:
        assert tracker.complete(job, chunk, part, counts(ok=1), 2) is False


def test_repeated_complete_neither_double_counts_nor_retriggers(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=2, rows_total=10)
    tracker.expect(job, 0, ["fast", "rejected"])
    tracker.expect(job, 1, ["balanced"])
    fast, rejected = counts(ok=4, cost="0.000100000000"), {"rows": {"rejected": 1}, "cost_usd": "0"}
    balanced = counts(ok=3, failed=2, cost="0.000250000000")

    assert not tracker.complete(job, 0, "fast", fast, 2)
    assert not tracker.complete(job, 0, "fast", fast, 2)  # redelivered before the chunk is done
    assert not tracker.complete(job, 0, "rejected", rejected, 2)
    assert tracker.complete(job, 1, "balanced", balanced, 2)
    assert not tracker.complete(job, 1, "balanced", balanced, 2)  # redelivered after
    assert not tracker.complete(job, 0, "fast", fast, 2)

    status = tracker.status(job)
    assert status is not None
    assert status.rows_by_status == {"ok": 7, "failed": 2, "rejected": 1}
    assert status.rows_done == status.rows_total == 10
    assert status.cost_usd == pytest.approx(0.00035)
    assert status.chunks_done == status.total_chunks == 2


def test_a_rewritten_part_replaces_its_counts(tracker: JobTracker) -> None:
    """A redelivered task records its part's counts again: the last write wins."""
    job = new_job(tracker, total_chunks=1)
    tracker.expect(job, 0, ["fast"])
    assert tracker.complete(job, 0, "fast", counts(ok=5, cost="0.5"), 1)
    tracker.complete(job, 0, "fast", counts(ok=4, failed=1, cost="0.4"), 1)
    status = tracker.status(job)
    assert status is not None
    assert status.rows_by_status == {"ok": 4, "failed": 1}
    assert status.cost_usd == pytest.approx(0.4)


def test_re_expecting_a_chunk_keeps_what_is_done(tracker: JobTracker) -> None:
    """A redelivered ingest registers the same parts again; nothing is lost or repeated."""
    job = new_job(tracker, total_chunks=1)
    tracker.expect(job, 0, ["fast", "expert"])
    assert not tracker.complete(job, 0, "fast", counts(ok=1), 1)
    tracker.expect(job, 0, ["fast", "expert"])
    assert not tracker.complete(job, 0, "fast", counts(ok=1), 1)
    assert tracker.complete(job, 0, "expert", counts(ok=1), 1)
    assert tracker.status(job).rows_by_status == {"ok": 2}  # type: ignore[union-attr]


def test_jobs_do_not_interfere(tracker: JobTracker) -> None:
    a, b = new_job(tracker, total_chunks=1), new_job(tracker, total_chunks=1)
    tracker.expect(a, 0, ["fast"])
    tracker.expect(b, 0, ["fast"])
    assert tracker.complete(a, 0, "fast", counts(ok=1), 1)
    assert tracker.status(b).chunks_done == 0  # type: ignore[union-attr]
    assert tracker.complete(b, 0, "fast", counts(ok=2), 1)
    assert tracker.status(a).rows_by_status == {"ok": 1}  # type: ignore[union-attr]
    assert tracker.status(b).rows_by_status == {"ok": 2}  # type: ignore[union-attr]


def test_set_state(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=1)
    tracker.set_state(job, "succeeded", cost_usd="1.250000000000")
    status = tracker.status(job)
    assert status is not None
    assert status.state == "succeeded"
    assert status.meta["cost_usd"] == "1.250000000000"
    assert status.total_chunks == 1  # registration metadata kept
    tracker.set_state(job, "failed", error="row count out != row count in")
    assert tracker.status(job).meta["error"] == "row count out != row count in"  # type: ignore[union-attr]


def test_touch_marks_a_running_job_as_progressing_and_nothing_else(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=1)
    before = float(tracker.status(job).meta.get("updated_at", 0))  # type: ignore[union-attr]
    time.sleep(0.01)
    assert tracker.touch(job) is True
    status = tracker.status(job)
    assert status is not None and status.state == "running"
    assert float(status.meta["updated_at"]) > before
    tracker.set_state(job, "succeeded")
    assert tracker.touch(job) is False
    assert tracker.state(job) == "succeeded"
    lost = f"never-{uuid.uuid4().hex}"  # state lost with Redis: left for reconcile
    assert tracker.touch(lost) is False and tracker.status(lost) is None


def test_list_jobs_newest_first_with_limit(tracker: JobTracker) -> None:
    base = uuid.uuid4().hex[:8]
    ids = [f"{base}-{i}" for i in range(4)]  # lexical order = creation order
    for job in ids:
        tracker.register(job, {"total_chunks": 1})
    assert tracker.list_jobs(limit=3) == ids[::-1][:3]
    assert tracker.list_jobs(limit=1) == [ids[-1]]
    assert ids[0] in tracker.list_jobs(limit=1000)


@pytest.mark.integration
def test_redis_keys_expire_with_the_ttl(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    tracker = RedisJobTracker(client, ttl_s=321)
    job = new_job(tracker, total_chunks=1)
    tracker.expect(job, 0, ["fast"])
    tracker.complete(job, 0, "fast", counts(ok=1), 1)
    for key in (
        keys.job(job),
        keys.job_parts(job),
        keys.job_chunks_done(job),
        keys.chunk_expected(job, 0),
        keys.chunk_done(job, 0),
    ):
        assert 0 < client.ttl(key) <= 321, key
    client.close()


# ---------------------------------------------------------------- concurrency

CHUNKS, PARTS = 20, ("fast", "expert", "rejected")


def _race(tracker: JobTracker, threads: int, seed: int) -> tuple[str, int]:
    """Complete every part of every chunk twice (a redelivery each), in a random order,
    from ``threads`` threads released together; return the job and how many completes
    returned True."""
    job = new_job(tracker, total_chunks=CHUNKS, rows_total=CHUNKS * len(PARTS))
    for chunk in range(CHUNKS):
        tracker.expect(job, chunk, list(PARTS))
    work = [(c, p) for c in range(CHUNKS) for p in PARTS] * 2
    random.Random(seed).shuffle(work)
    slices = [work[i::threads] for i in range(threads)]
    start = threading.Barrier(threads)

    def run(mine: list[tuple[int, str]]) -> int:
        start.wait()
        return sum(tracker.complete(job, c, p, counts(ok=1, cost="0.001"), CHUNKS) for c, p in mine)

    with ThreadPoolExecutor(threads) as pool:
        return job, sum(pool.map(run, slices))


def test_concurrent_completes_finalize_exactly_once(tracker: JobTracker) -> None:
    for rep in range(20):
        job, triggers = _race(tracker, threads=8, seed=rep)
        assert triggers == 1, f"repetition {rep}: finalize triggered {triggers} times"
        status = tracker.status(job)
        assert status is not None
        assert status.chunks_done == CHUNKS
        assert status.rows_by_status == {"ok": CHUNKS * len(PARTS)}
        assert status.cost_usd == pytest.approx(0.001 * CHUNKS * len(PARTS))


def _complete_all(url: str, jobs: list[str], seed: int) -> int:
    """Process body: complete every part of every job's chunks, in a random order."""
    tracker = RedisJobTracker.from_url(url, TTL)
    work = [(j, c, p) for j in jobs for c in range(CHUNKS) for p in PARTS]
    random.Random(seed).shuffle(work)
    return sum(tracker.complete(j, c, p, counts(ok=1), CHUNKS) for j, c, p in work)


@pytest.mark.integration
def test_concurrent_completes_from_processes_finalize_exactly_once(redis_url: str) -> None:
    tracker = RedisJobTracker.from_url(redis_url, TTL)
    jobs = [new_job(tracker, total_chunks=CHUNKS) for _ in range(10)]
    for job in jobs:
        for chunk in range(CHUNKS):
            tracker.expect(job, chunk, list(PARTS))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        triggers = pool.starmap(_complete_all, [(redis_url, jobs, seed) for seed in range(4)])
    assert sum(triggers) == len(jobs)  # every process did every part: one trigger per job
    for job in jobs:
        status = tracker.status(job)
        assert status is not None
        assert status.chunks_done == CHUNKS
        assert status.rows_by_status == {"ok": CHUNKS * len(PARTS)}


def test_a_running_job_id_cannot_be_registered_again(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=1)
    with pytest.raises(JobConflictError, match="already running"):
        tracker.register(job, {"total_chunks": 1})


def test_a_finished_job_id_starts_afresh_when_reused(tracker: JobTracker) -> None:
    job = new_job(tracker, total_chunks=1)
    tracker.expect(job, 0, ["fast"])
    assert tracker.complete(job, 0, "fast", counts(ok=3), 1)
    tracker.set_state(job, "succeeded")
    tracker.register(job, {"total_chunks": 1, "rows_total": 2})
    status = tracker.status(job)
    assert status is not None
    assert (status.state, status.chunks_done, status.rows_by_status) == ("running", 0, {})
    tracker.expect(job, 0, ["fast", "expert"])
    assert not tracker.complete(job, 0, "fast", counts(ok=1), 1)
    assert tracker.complete(job, 0, "expert", counts(ok=1), 1)


def test_racing_registrations_of_one_job_id_admit_exactly_one(tracker: JobTracker) -> None:
    """Two submitters (e.g. two watchers) registering the same id at once: one wins, the
    other gets JobConflictError — even when the id was used before by a finished job."""
    threads = 8
    for rep in range(30):
        job = f"race-{uuid.uuid4().hex[:10]}"
        if rep % 2:  # a finished job with this id: its stale state is cleared once
            tracker.register(job, {"total_chunks": 1})
            tracker.expect(job, 0, ["fast"])
            tracker.complete(job, 0, "fast", counts(ok=1), 1)
            tracker.set_state(job, "succeeded")
        start = threading.Barrier(threads)

        def register(n: int, job: str = job, start: threading.Barrier = start) -> str:
            start.wait()
            try:
                tracker.register(job, {"total_chunks": 2, "rows_total": n})
            except JobConflictError:
                return "refused"
            return "registered"

        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(register, range(threads)))
        assert outcomes.count("registered") == 1, f"repetition {rep}: {outcomes}"
        status = tracker.status(job)
        assert status is not None
        assert (status.state, status.total_chunks, status.chunks_done) == ("running", 2, 0)
        assert status.rows_by_status == {}
