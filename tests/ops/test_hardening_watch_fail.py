"""A dropped file whose job fails after planning goes to ``failed/`` with the reason, and
the inbox goes on (issue 13, finding 4, job level): a real ``batch-router watch --once``
against the ops stack's SeaweedFS, Redis, Celery workers and simulated provider."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests import services
from tests.ops import stack as ops
from tests.workers.failing import TRUNCATED, corrupt_after_footer, prompts_table
from workers.jobstate import RedisJobTracker
from workers.runtime import Runtime

pytestmark = [pytest.mark.ops, pytest.mark.integration, pytest.mark.timeout(300)]


def _env(stack: ops.OpsStack, **extra: str) -> dict[str, str]:
    return {**os.environ, **stack.env, "BATCH_ROUTER_WATCH_POLL_S": "0.5", **extra}


def _watch_cmd(bucket: str, *args: str) -> list[str]:
    inbox, out = f"s3://{bucket}/inbox/", f"s3://{bucket}/out/"
    return [sys.executable, "-m", "producer", "watch", inbox, "--output", out, *args]


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _parquet(rows: int, tag: str) -> bytes:
    sink = io.BytesIO()
    pq.write_table(prompts_table(rows, tag), sink)
    return sink.getvalue()


@pytest.fixture
def inbox_bucket(ops_fleet: ops.OpsStack) -> str:
    name = f"drop-{uuid.uuid4().hex[:10]}"
    services.s3_client(ops_fleet.env["BATCH_ROUTER_S3__ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name


def test_files_whose_jobs_fail_after_planning_are_moved_to_failed_and_the_inbox_goes_on(
    ops_fleet: ops.OpsStack, inbox_bucket: str
) -> None:
    """One job at a time (``WATCH_MAX_JOBS=1``), the two unreadable files listed first: were
    their jobs to hang, the good files behind them would wait for ever."""
    stack, bucket = ops_fleet, inbox_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    bad = {"inbox/acme/a-bad.parquet", "inbox/globex/b-bad.parquet"}
    for key in sorted(bad):
        client.put_object(
            Bucket=bucket, Key=key, Body=corrupt_after_footer(tag=key.split("/")[-1][:5])
        )
    client.put_object(Bucket=bucket, Key="inbox/acme/c-good.parquet", Body=_parquet(20, "good-c"))
    client.put_object(Bucket=bucket, Key="inbox/globex/d-good.parquet", Body=_parquet(20, "good-d"))
    once = subprocess.run(
        _watch_cmd(bucket, "--once"),
        env=_env(stack, BATCH_ROUTER_WATCH_MAX_JOBS="1"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert once.returncode == 1, once.stdout + once.stderr
    assert "2 processed, 2 failed" in once.stderr, once.stdout + once.stderr
    assert _keys(client, bucket, "inbox/") == []
    assert len(_keys(client, bucket, "processed/")) == 2

    jobs = RedisJobTracker.from_url(stack.redis_url, 3600)
    errors = [k for k in _keys(client, bucket, "failed/") if k.endswith("error.json")]
    assert sorted(k.split("/")[1] for k in errors) == ["acme", "globex"]
    for key in errors:
        error = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        job_id = key.split("/")[2]
        assert error["job_id"] == job_id and error["stage"] == "job"
        assert error["error"].startswith(f"job {job_id} failed: ingest chunk ")
        assert TRUNCATED in error["error"]
        status = jobs.status(job_id)
        assert status is not None and status.state == "failed"
        assert error["error"] == status.describe()
        assert error["file"].removeprefix(f"s3://{bucket}/") in bad


@pytest.mark.integration
def test_a_watcher_whose_job_state_vanished_ends_on_the_durable_failure_record(
    redis_url: str, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis lost a failed job's state (restarted without persistence, or expired) while
    its file waited in the inbox: ``_job/failed.json`` still ends the wait, as failed."""
    from producer.watch.watcher import Watcher
    from routing.policy import load_policy
    from workers import finalize
    from workers.jobstate import MemoryJobTracker
    from workers.settings import Settings
    from workers.storage import Storage

    for name, value in services.deployment_env(redis_url, s3_endpoint, "http://x/v1").items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    out = f"s3://{bucket}/out/"
    watcher = Watcher(settings, load_policy(), f"s3://{bucket}/inbox/", out)
    job_id = f"vanished-{uuid.uuid4().hex[:6]}"
    assert watcher._failed_for_good(job_id) is None  # nothing recorded: not failed

    rt = Runtime(settings=settings, storage=Storage(settings.s3), tracker=MemoryJobTracker())
    reason = "ingest chunk 0: ArrowInvalid: bad page"
    assert finalize.fail_job(rt, job_id, f"{out}job_id={job_id}", reason, {"task": "ingest"})
    assert RedisJobTracker.from_url(redis_url, 3600).status(job_id) is None
    status = watcher._failed_for_good(job_id)
    assert status is not None and status.describe() == f"job {job_id} failed: {reason}"
