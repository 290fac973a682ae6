"""Provider batches in operations, against a real Redis: ``batch-router status`` lists each
provider batch of a job (table and ``--json``) from the summaries batch mode publishes
(``workers.batches.record.publish_summary``), and the exporter's gauges count the batches
in flight per provider and status and the age of the oldest, over running jobs only."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.core import GaugeMetricFamily

from tests.cli import CliRunner
from workers import exporter, keys
from workers.batches.record import ProviderBatch, publish_summary, summaries
from workers.jobstate import RedisJobTracker

pytestmark = [pytest.mark.ops, pytest.mark.integration]


def _batch(n: int, tier: str, round_: int, age_s: float, **fields: object) -> ProviderBatch:
    return ProviderBatch(
        key=f"n{round_}-a1-f{n}",
        round=round_,
        attempt=1,
        tier=tier,
        refs=[f"c0/r{i}" for i in range(10 * (n + 1))],
        batch_id=f"batch_{uuid.uuid4().hex[:10]}",
        submitted_at=time.time() - age_s,
        **fields,  # type: ignore[arg-type]
    )


_MADE: list[str] = []  # the jobs a test registered: ended and cleared after it


def _job(
    client: redis.Redis, tracker: RedisJobTracker, batches: list[tuple[ProviderBatch, str]]
) -> str:
    job = f"batchops-{uuid.uuid4().hex[:8]}"
    _MADE.append(job)
    tracker.register(job, {"total_chunks": 1, "rows_total": 60, "job_root": f"/tmp/job_id={job}"})
    for batch, provider in batches:
        publish_summary(client, job, 0, batch, provider)
    return job


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def tracker(redis_url: str, client: redis.Redis) -> Iterator[RedisJobTracker]:
    """The job tracker; the jobs the test made end afterwards (not running, no batches),
    so other tests sharing this Redis (``status`` of recent jobs) never see them."""
    jobs = RedisJobTracker.from_url(redis_url, 600)
    yield jobs
    while _MADE:
        job = _MADE.pop()
        client.delete(keys.job_batches(job))
        jobs.set_state(job, "succeeded")


# ---------------------------------------------------------------- status


def test_status_lists_each_provider_batch(
    cli: CliRunner, redis_url: str, client: redis.Redis, tracker: RedisJobTracker
) -> None:
    openai = _batch(
        0, "fast", 1, 3630, status="in_progress", counts={"total": 10, "completed": 4, "failed": 0}
    )
    anthropic = _batch(
        1,
        "expert",
        2,
        30,
        status="ended",
        ended=True,
        collected=True,
        counts={"processing": 0, "succeeded": 19, "errored": 1},
    )
    job = _job(client, tracker, [(anthropic, "anthropic"), (openai, "openai")])
    assert set(summaries(client, job)) == {openai.batch_id, anthropic.batch_id}

    proc = cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = json.loads(proc.stdout)
    first, second = row["batches"]  # chunk, round, attempt, tier order
    assert first == {
        "batch_id": openai.batch_id,
        "chunk": 0,
        "tier": "fast",
        "round": 1,
        "attempt": 1,
        "provider": "openai",
        "status": "in_progress",
        "requests": 10,
        "counts": {"total": 10, "completed": 4, "failed": 0},
        "submitted_at": openai.submitted_at,
        "age_s": first["age_s"],
        "ended": False,
        "collected": False,
    }
    assert 3630 <= first["age_s"] < 3630 + 300
    assert (second["batch_id"], second["provider"], second["round"]) == (
        anthropic.batch_id,
        "anthropic",
        2,
    )
    assert second["collected"] and second["ended"] and second["requests"] == 20

    table = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "provider batches" in table.stdout
    line = next(x for x in table.stdout.splitlines() if openai.batch_id in x)
    for cell in ("fast", "openai", "in_progress", "completed 4", "1h0", "no"):
        assert cell in line, line
    line = next(x for x in table.stdout.splitlines() if anthropic.batch_id in x)
    for cell in ("expert", "anthropic", "ended", "succeeded 19", "errored 1", "yes"):
        assert cell in line, line


def test_status_of_a_job_without_provider_batches_has_no_batches(
    cli: CliRunner, redis_url: str, client: redis.Redis, tracker: RedisJobTracker
) -> None:
    job = _job(client, tracker, [])
    [row] = json.loads(cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url).stdout)
    assert "batches" not in row
    table = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url).stdout
    assert "provider batches" not in table


def test_status_survives_a_damaged_summary(
    cli: CliRunner, redis_url: str, client: redis.Redis, tracker: RedisJobTracker
) -> None:
    job = _job(client, tracker, [])
    client.hset(keys.job_batches(job), "garbage", "not json")
    proc = cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = json.loads(proc.stdout)
    assert row["job_id"] == job and "batches" not in row
    assert "unreadable provider batch summaries" in proc.stderr


def test_publish_summary_needs_a_client_and_an_id(client: redis.Redis) -> None:
    job = f"batchops-{uuid.uuid4().hex[:8]}"
    planned = _batch(0, "fast", 1, 0).model_copy(update={"batch_id": None})
    publish_summary(client, job, 0, planned, "openai")  # not submitted: nothing to show
    publish_summary(None, job, 0, _batch(0, "fast", 1, 0), "openai")  # a local run
    assert summaries(client, job) == {}


# ---------------------------------------------------------------- exporter


def _families(collector: exporter.RedisCollector) -> dict[str, GaugeMetricFamily]:
    return {f.name: f for f in collector.collect()}


def _samples(family: GaugeMetricFamily, **labels: str) -> list[float]:
    return [s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_exporter_counts_batches_in_flight_of_running_jobs(
    redis_url: str, client: redis.Redis, tracker: RedisJobTracker
) -> None:
    provider = f"sim-{uuid.uuid4().hex[:6]}"  # a label no other test's batches carry
    other = f"sim-{uuid.uuid4().hex[:6]}"
    running = _job(
        client,
        tracker,
        [
            (_batch(0, "fast", 1, 600, status="in_progress"), provider),
            (_batch(1, "fast", 1, 90, status="in_progress"), provider),
            (_batch(2, "fast", 1, 5000, status="completed", ended=True), provider),
            (_batch(3, "fast", 1, 9000, status="completed", ended=True, collected=True), provider),
            (_batch(4, "expert", 2, 10, status="validating"), other),
        ],
    )
    finished = _job(
        client, tracker, [(_batch(0, "fast", 1, 99999, status="in_progress"), provider)]
    )
    tracker.set_state(finished, "succeeded")
    client.hset(keys.job_batches(running), "garbage", "not json")  # skipped, not fatal

    raw = redis.Redis.from_url(redis_url)  # as the exporter's: bytes, not str
    collector = exporter.RedisCollector(raw, raw, ["ingest"])
    assert running in collector.running_jobs() and finished not in collector.running_jobs()
    families = _families(collector)
    assert _samples(families["batch_router_redis_up"]) == [1]

    batches = families["batch_router_provider_batches"]
    assert _samples(batches, provider=provider, status="in_progress") == [2]
    assert _samples(batches, provider=provider, status="completed") == [1]  # not collected
    assert _samples(batches, provider=other, status="validating") == [1]
    assert sum(_samples(batches, provider=provider)) == 3  # collected and finished: not

    [age] = _samples(families["batch_router_provider_batch_oldest_age_seconds"], provider=provider)
    assert 5000 <= age < 5000 + 120  # the ended batch not yet collected is the oldest
    [age] = _samples(families["batch_router_provider_batch_oldest_age_seconds"], provider=other)
    assert 10 <= age < 130


def test_exporter_reads_a_bounded_number_of_running_jobs(
    redis_url: str, client: redis.Redis, tracker: RedisJobTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = f"sim-{uuid.uuid4().hex[:6]}"
    jobs = [
        _job(client, tracker, [(_batch(0, "fast", 1, 60, status="in_progress"), provider)])
        for _ in range(5)
    ]
    monkeypatch.setattr(exporter, "MAX_RUNNING_JOBS", 3)
    raw = redis.Redis.from_url(redis_url)
    collector = exporter.RedisCollector(raw, raw, [])
    assert collector.running_jobs() == jobs[::-1][:3]  # the newest three
    in_flight, _ = collector.provider_batches()
    assert in_flight[provider, "in_progress"] == 3
