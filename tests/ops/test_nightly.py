"""Nightly jobs: one job per cron window, a missed night caught up once, never started
twice — with an injected clock (real Redis, real fleet submission) and with two real
``celery beat`` processes on a compressed clock (a cron with seconds, a 1 s tick)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from producer.sample import sample_prompts
from tests import services
from tests.ops import stack as ops
from workers import nightly
from workers.settings import Settings

pytestmark = [pytest.mark.ops, pytest.mark.integration, pytest.mark.timeout(300)]


def _settings(stack: ops.OpsStack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _upload(client: Any, bucket: str, key: str, rows: int = 20) -> None:
    sink = io.BytesIO()
    pq.write_table(sample_prompts(rows, seed=len(key)), sink)
    client.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def _jobs(redis_url: str, prefix: str) -> list[Any]:
    from workers.jobstate import RedisJobTracker

    tracker = RedisJobTracker.from_url(redis_url, 3600)
    found = [tracker.status(j) for j in tracker.list_jobs(limit=100_000) if j.startswith(prefix)]
    return [s for s in found if s is not None]


def _wait_finished(redis_url: str, prefix: str, count: int, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = _jobs(redis_url, prefix)
        if len(jobs) >= count and all(j.state in ("succeeded", "failed") for j in jobs):
            return jobs
        time.sleep(0.3)
    raise TimeoutError(f"jobs {prefix}*: {[(j.job_id, j.state) for j in _jobs(redis_url, prefix)]}")


@pytest.fixture
def night_bucket(ops_fleet: ops.OpsStack) -> str:
    name = f"night-{uuid.uuid4().hex[:10]}"
    services.s3_client(ops_fleet.env["BATCH_ROUTER_S3__ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name


def test_missed_nights_are_caught_up_once_and_never_started_twice(
    ops_fleet: ops.OpsStack, night_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, bucket = ops_fleet, night_bucket
    settings = _settings(stack, monkeypatch)
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    for day in range(1, 6):
        _upload(client, bucket, f"nightly/2026-12-0{day}/part-0.parquet")
    name = f"acme-{uuid.uuid4().hex[:6]}"
    schedule = nightly.Schedule(
        name=name,
        cron="0 2 * * *",
        input=f"s3://{bucket}/nightly/{{date}}/",
        output=f"s3://{bucket}/out/",
        tenant="acme",
    )
    missing = schedule.model_copy(
        update={"name": f"{name}-missing", "input": f"s3://{bucket}/absent/{{date}}/"}
    )

    def tick(now: datetime, which: list[nightly.Schedule] | None = None) -> list[nightly.Fired]:
        return nightly.tick(settings, which or [schedule], now, nightly.fleet_submit)

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour, minute, tzinfo=UTC)

    assert [f.window for f in tick(at(1, 3))] == [at(1, 2)]
    assert tick(at(1, 23)) == []  # same window: nothing new
    # beat was down for the nights of the 2nd and 3rd: only the latest window runs
    assert [f.window for f in tick(at(4, 5))] == [at(4, 2)]
    assert tick(at(4, 5, 1)) == []
    assert tick(at(3, 5)) == []  # a late tick never starts an older window

    # two beats ticking at the same moment: one job
    barrier, fired = threading.Barrier(2), []

    def racer() -> None:
        barrier.wait()
        fired.extend(tick(at(5, 2, 30)))

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [f.window for f in fired] == [at(5, 2)]

    jobs = _wait_finished(stack.redis_url, f"nightly-{name}-2", 3)
    inputs = Counter(j.meta["input_uri"] for j in jobs)
    assert inputs == {f"s3://{bucket}/nightly/2026-12-0{d}/": 1 for d in (1, 4, 5)}, inputs
    assert all(j.state == "succeeded" and j.meta["tenant"] == "acme" for j in jobs), jobs

    # no input that night: recorded once with the planner's message, not retried
    (failed,) = tick(at(5, 3), [missing])
    assert failed.error and "no such file or folder" in failed.error, failed
    assert tick(at(5, 4), [missing]) == []
    import redis

    record = redis.Redis.from_url(stack.redis_url, decode_responses=True).get(
        nightly.window_key(missing.name, at(5, 2))
    )
    assert record and "not submitted" in record
    assert _jobs(stack.redis_url, f"nightly-{missing.name}-") == []


def test_two_beats_on_a_compressed_clock_start_one_job_per_window(
    ops_fleet: ops.OpsStack, night_bucket: str, tmp_path: Path
) -> None:
    """Two real ``celery beat`` processes, a 1 s tick and a window every 4 s."""
    stack, bucket = ops_fleet, night_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    _upload(client, bucket, "beat/in/part-0.parquet")
    name = f"beat-{uuid.uuid4().hex[:6]}"
    entry = {
        "name": name,
        "cron": "* * * * * */4",
        "input": f"s3://{bucket}/beat/in/",
        "output": f"s3://{bucket}/beat/out/{{window}}/",
        "tenant": "globex",
    }
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": [entry]}))
    env = {
        **os.environ,
        **stack.env,
        "BATCH_ROUTER_SCHEDULE": str(path),
        "BATCH_ROUTER_NIGHTLY_TICK_S": "1",
    }
    beats = []
    for n in (1, 2):
        cmd = [
            sys.executable, "-m", "celery", "-A", "workers.worker", "beat", "--loglevel", "INFO",
            "-s", str(tmp_path / f"beat-{n}.db"), "--pidfile", str(tmp_path / f"beat-{n}.pid"),
        ]  # fmt: skip
        beats.append(services.start(cmd, tmp_path / f"beat-{n}.log", f"beat-{n}", env=env))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_jobs(stack.redis_url, f"nightly-{name}-")) < 3:
            time.sleep(0.5)
    finally:
        for beat in beats:
            beat.stop()
    logs = "\n".join(b.log_tail(3000) for b in beats)
    for beat in beats:  # both beats really ticked
        assert beat.log_tail(10**6).count("Sending due task nightly-tick") >= 2, logs
    jobs = _wait_finished(stack.redis_url, f"nightly-{name}-", 3)
    windows = Counter(j.job_id.rsplit("-", 1)[0] for j in jobs)
    assert len(windows) >= 3 and set(windows.values()) == {1}, (windows, logs)
    stamps = sorted(datetime.strptime(w[-16:], "%Y%m%dT%H%M%SZ") for w in windows)
    assert all(s.second % 4 == 0 for s in stamps), stamps  # cron fire times
    assert all(j.state == "succeeded" and j.meta["tenant"] == "globex" for j in jobs), jobs
    for job in jobs:  # {window} rendered in the output prefix
        stamp = job.job_id.rsplit("-", 1)[0][-16:]
        assert job.meta["job_root"] == f"s3://{bucket}/beat/out/{stamp}/job_id={job.job_id}"


def test_windows_and_schedule_file_checks(tmp_path: Path) -> None:
    daily = nightly.Schedule(name="d", cron="15 2 * * *", input="s3://i/{date}/", output="s3://o/")
    at = datetime(2026, 12, 4, 2, 15, tzinfo=UTC)
    assert daily.latest_window(at) == at  # a fire time is its own window
    for late in (1, 5, 35, 59):  # any instant of the fire minute: the same window
        assert daily.latest_window(at.replace(second=late, microsecond=999_999)) == at
    assert daily.latest_window(at.replace(minute=16)) == at
    assert daily.latest_window(at.replace(minute=14)) == datetime(2026, 12, 3, 2, 15, tzinfo=UTC)
    assert daily.render(daily.input, at) == "s3://i/2026-12-04/"
    fast = daily.model_copy(update={"cron": "* * * * * */4"})
    assert fast.latest_window(at.replace(second=7)) == at.replace(second=4)

    bad = tmp_path / "bad.yaml"
    wrong = {"name": "x", "cron": "61 * * * *", "input": "s3://i/{day}/", "output": "s3://o/"}
    bad.write_text(yaml.safe_dump({"schedules": [wrong]}))
    with pytest.raises(nightly.ConfigError, match="not a cron expression") as info:
        nightly.load_schedules(bad)
    assert "only {date} and {window} may be used" in str(info.value)
    twice = tmp_path / "twice.yaml"
    entry = {"name": "x", "cron": "0 2 * * *", "input": "s3://i/", "output": "s3://o/"}
    twice.write_text(yaml.safe_dump({"schedules": [entry, entry]}))
    with pytest.raises(nightly.ConfigError, match="unique"):
        nightly.load_schedules(twice)


def test_ticks_inside_the_fire_minute_start_one_job(
    ops_fleet: ops.OpsStack, night_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30 s tick lands twice in a 5-field cron's fire minute: one window, one job."""
    settings = _settings(ops_fleet, monkeypatch)
    client = services.s3_client(ops_fleet.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    _upload(client, night_bucket, "minute/2026-12-04/part-0.parquet")
    name = f"minute-{uuid.uuid4().hex[:6]}"
    schedule = nightly.Schedule(
        name=name,
        cron="15 2 * * *",
        input=f"s3://{night_bucket}/minute/{{date}}/",
        output=f"s3://{night_bucket}/minute-out/",
    )
    fire = datetime(2026, 12, 4, 2, 15, tzinfo=UTC)
    fired = []
    for second, micro in [(0, 0), (5, 250_000), (35, 0), (59, 999_999)]:
        now = fire.replace(second=second, microsecond=micro)
        fired += nightly.tick(settings, [schedule], now, nightly.fleet_submit)
    fired += nightly.tick(
        settings, [schedule], fire.replace(minute=16, second=5), nightly.fleet_submit
    )
    assert [f.window for f in fired] == [fire], fired  # one window, submitted once
    (job,) = _wait_finished(ops_fleet.redis_url, f"nightly-{name}-", 1)
    assert job.job_id == nightly.job_id_for(schedule, fire) and job.state == "succeeded", job


def test_a_window_whose_submission_failed_after_registering_is_adopted(
    ops_fleet: ops.OpsStack, night_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job was registered and its chunks queued, then Redis "failed": the next tick
    finds the job by its deterministic id and adopts it instead of submitting again."""
    settings = _settings(ops_fleet, monkeypatch)
    client = services.s3_client(ops_fleet.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    _upload(client, night_bucket, "flaky/2026-12-04/part-0.parquet")
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    schedule = nightly.Schedule(
        name=name,
        cron="0 2 * * *",
        input=f"s3://{night_bucket}/flaky/{{date}}/",
        output=f"s3://{night_bucket}/flaky-out/",
    )
    submissions: list[str] = []

    def submit_then_fail(
        s: Settings, sched: nightly.Schedule, window: datetime, job_id: str
    ) -> None:
        submissions.append(job_id)
        nightly.fleet_submit(s, sched, window, job_id)
        if len(submissions) == 1:
            raise ConnectionError("connection reset while recording the submission")

    at = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    with pytest.raises(ConnectionError):
        nightly.tick(settings, [schedule], at, submit_then_fail)
    (retry,) = nightly.tick(settings, [schedule], at.replace(minute=1), submit_then_fail)
    assert len(submissions) == 1, submissions  # never submitted a second time
    assert retry.job_id == submissions[0] and retry.error is None and retry.adopted, retry
    assert nightly.tick(settings, [schedule], at.replace(minute=2), submit_then_fail) == []
    (job,) = _wait_finished(ops_fleet.redis_url, f"nightly-{name}-", 1)
    assert job.job_id == submissions[0] and job.state == "succeeded", job
    assert job.job_id == nightly.job_id_for(schedule, at.replace(hour=2))
    assert nightly.job_id_for(schedule, at.replace(hour=2)) != nightly.job_id_for(schedule, at)


def test_beat_sends_ticks_to_the_finalize_queue_with_a_lenient_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not behind the ingest backlog (ticks there expired unread), and a late tick may
    still run: the window claim makes an extra tick harmless."""
    from workers.app import make_app
    from workers.queues import FINALIZE_QUEUE

    path = tmp_path / "schedules.yaml"
    entry = {"name": "x", "cron": "0 2 * * *", "input": "s3://i/", "output": "s3://o/"}
    path.write_text(yaml.safe_dump({"schedules": [entry]}))
    monkeypatch.setenv("BATCH_ROUTER_SCHEDULE", str(path))
    monkeypatch.setenv("BATCH_ROUTER_NIGHTLY_TICK_S", "30")
    options = make_app(Settings()).conf.beat_schedule["nightly-tick"]["options"]
    assert options["queue"] == FINALIZE_QUEUE
    assert options["expires"] >= 3 * 30
