"""``batch-router status`` against a real Redis (job state as workers leave it)."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from tests.cli import CliRunner, assert_clean_error
from workers import keys
from workers.jobstate import RedisJobTracker

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_status_of_an_unknown_job(cli: CliRunner, redis_url: str) -> None:
    job = f"no-such-job-{uuid.uuid4().hex[:6]}"
    proc = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url)
    assert_clean_error(proc, f"unknown job {job}", code=1)


def test_status_of_a_running_job(cli: CliRunner, redis_url: str) -> None:
    job = f"status-{uuid.uuid4().hex[:6]}"
    jobs = RedisJobTracker.from_url(redis_url, 600)
    jobs.register(job, {"total_chunks": 2, "rows_total": 30, "job_root": f"/tmp/out/job_id={job}"})
    jobs.expect(job, 0, ["fast", "rejected"])
    counts: list[tuple[str, dict[str, Any]]] = [
        ("fast", {"rows": {"ok": 18}, "cost_usd": 0.25}),
        ("rejected", {"rows": {"rejected": 2}}),
    ]
    for part, c in counts:
        jobs.complete(job, 0, part, c, total_chunks=2)

    proc = cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = json.loads(proc.stdout)
    assert row == {
        "job_id": job,
        "state": "running",
        "chunks_done": 1,
        "total_chunks": 2,
        "rows_total": 30,
        "rows_by_status": {"ok": 18, "rejected": 2},
        "cost_usd": 0.25,
        "eta_s": None,  # no start time recorded
        "dead_letters": [],
        "error": None,
    }

    table = cli("status", BATCH_ROUTER_BROKER_URL=redis_url)  # no id: recent jobs
    assert table.returncode == 0, table.stdout + table.stderr
    line = next(line for line in table.stdout.splitlines() if job in line)
    for cell in ("running", "1/2", "20/30", "ok 18, rejected 2", "$0.2500"):
        assert cell in line, line


def test_status_shows_dead_letters(cli: CliRunner, redis_url: str) -> None:
    job = f"dead-{uuid.uuid4().hex[:6]}"
    jobs = RedisJobTracker.from_url(redis_url, 600)
    jobs.register(job, {"total_chunks": 1, "rows_total": 5, "job_root": f"/tmp/job_id={job}"})
    entry = {"task": "dispatch", "chunk": 0, "tier": "fast", "error": "StorageError: boom"}
    jobs.dead_letter(job, entry)
    proc = cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url)
    assert json.loads(proc.stdout)[0]["dead_letters"] == [entry]
    table = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url)
    assert "dead letter" in table.stdout and "StorageError: boom" in table.stdout
    assert "batch-router reconcile" in table.stdout


def test_status_of_a_failed_job_says_why(cli: CliRunner, redis_url: str) -> None:
    job = f"failed-{uuid.uuid4().hex[:6]}"
    jobs = RedisJobTracker.from_url(redis_url, 600)
    jobs.register(job, {"total_chunks": 1, "rows_total": 5, "job_root": f"/tmp/job_id={job}"})
    entry = {"task": "ingest", "chunk": 0, "tier": None, "error": "ArrowInvalid: bad page"}
    jobs.dead_letter(job, entry)
    jobs.fail(job, "ingest chunk 0: ArrowInvalid: bad page")
    [row] = json.loads(cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url).stdout)
    assert row["state"] == "failed" and row["error"] == "ingest chunk 0: ArrowInvalid: bad page"
    table = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url).stdout
    assert f"failed {job}: ingest chunk 0: ArrowInvalid: bad page" in table, table
    assert "batch-router reconcile" not in table  # reconcile never re-runs a failed job


def test_status_list_skips_jobs_whose_state_expired(cli: CliRunner, redis_url: str) -> None:
    """The jobs index outlives each job's hash (``job_ttl_s``); listing must not fail."""
    expired, live = f"expired-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    RedisJobTracker.from_url(redis_url, 600).register(live, {"total_chunks": 1, "rows_total": 5})
    client = redis.Redis.from_url(redis_url)
    client.zadd(keys.jobs_index(), {expired: time.time() + 1})  # newest, but no job hash

    try:
        proc = cli("status", "--json", BATCH_ROUTER_BROKER_URL=redis_url)
    finally:
        client.zrem(keys.jobs_index(), expired)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [row["job_id"] for row in json.loads(proc.stdout)]
    assert live in listed
    assert expired not in listed


def test_status_estimates_the_time_left(cli: CliRunner, redis_url: str) -> None:
    job = f"eta-{uuid.uuid4().hex[:6]}"
    started = datetime.fromtimestamp(time.time() - 100, UTC).isoformat(timespec="seconds")
    jobs = RedisJobTracker.from_url(redis_url, 600)
    jobs.register(job, {"total_chunks": 4, "rows_total": 400, "created_at": started})
    jobs.expect(job, 0, ["fast"])
    jobs.complete(job, 0, "fast", {"rows": {"ok": 100}, "cost_usd": 0.1}, total_chunks=4)
    [row] = json.loads(cli("status", job, "--json", BATCH_ROUTER_BROKER_URL=redis_url).stdout)
    assert 250 <= row["eta_s"] <= 350  # 100 rows in ~100 s, 300 to go
    table = cli("status", job, BATCH_ROUTER_BROKER_URL=redis_url).stdout
    assert re.search(r"[45]m\d\ds", table), table
