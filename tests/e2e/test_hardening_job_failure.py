"""A deterministic error after planning fails the job once on the real fleet (issue 13,
finding 4, job level): real ``celery worker`` processes, Redis, SeaweedFS and the simulated
provider. The job ends ``failed`` with its reason in Redis, ``manifest.json`` and
``_job/failed.json``; nothing is retried or dead-lettered; reconcile and beat's sweep
never send it again; ``submit --wait`` exits 1 without a traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import services
from tests.workers.failing import TRUNCATED, corrupt_after_footer, prompts_table
from workers.jobstate import JobStatus, RedisJobTracker
from workers.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _parquet(table: pa.Table, per_group: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=per_group)
    return sink.getvalue()


def _ended(redis_url: str, job_id: str, timeout: float = 120) -> JobStatus:
    jobs = RedisJobTracker.from_url(redis_url, 3600)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status(job_id)
        if status is not None and status.state in ("succeeded", "failed"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {jobs.status(job_id)} after {timeout} s")


def _object(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return dict(json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def _assert_failed_once(
    client: Any, bucket: str, redis_url: str, job_id: str, *needles: str
) -> JobStatus:
    """Failed with a reason naming ``needles``, the same in Redis, the manifest and the
    failure record; no dead letter (nothing was retried into one); no ``_SUCCESS``."""
    status = _ended(redis_url, job_id)
    assert status.state == "failed" and status.error, status
    for needle in needles:
        assert needle in status.error, status.error
    assert RedisJobTracker.from_url(redis_url, 3600).dead_letters(job_id) == []
    root = f"out/job_id={job_id}"
    manifest = _object(client, bucket, f"{root}/manifest.json")
    assert (manifest["state"], manifest["error"], manifest["complete"]) == (
        "failed",
        status.error,
        False,
    )
    assert _object(client, bucket, f"{root}/_job/failed.json")["error"] == status.error
    assert f"{root}/_SUCCESS" not in _keys(client, bucket, root)
    return status


def _never_resumed(
    env: dict[str, str], bucket: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beat's sweep does not pick the job, even with Redis's state gone; ``batch-router
    reconcile`` says it failed and sends nothing."""
    from workers.reconcile import stalled_jobs
    from workers.runtime import Runtime
    from workers.storage import Storage

    settings = _settings(env, monkeypatch)
    tracker = RedisJobTracker.from_url(env["BATCH_ROUTER_BROKER_URL"], 3600)
    rt = Runtime(settings=settings, storage=Storage(settings.s3), tracker=tracker)
    root = f"s3://{bucket}/out/job_id={job_id}"
    later = time.time() + 10**6
    assert root not in stalled_jobs(rt, [f"s3://{bucket}/out"], stall_s=0, now=later)
    proc = subprocess.run(
        [sys.executable, "-m", "producer", "reconcile", root, "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["state"] == "failed" and report["error"] == tracker.status(job_id).error  # type: ignore[union-attr]
    assert report["reingested"] == [] and report["parts_resent"] == {}
    assert tracker.status(job_id).state == "failed"  # type: ignore[union-attr]


def test_submit_wait_of_a_file_unreadable_past_its_footer_fails_once(
    bucket: str, fleet: dict, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    body = corrupt_after_footer(rows=2000, per_group=1000, tag="fleet")  # 2 chunks of 1,000
    client.put_object(Bucket=bucket, Key="in/p.parquet", Body=body)
    job_id = "e2e-unreadable"
    proc = services.submit(bucket, job_id, fleet_env, timeout=240)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 1, both + "".join(p.log_tail() for p in fleet.values())
    assert "Traceback" not in both and f"job {job_id} failed" in proc.stderr, both
    _assert_failed_once(client, bucket, fleet_env["BATCH_ROUTER_BROKER_URL"], job_id, TRUNCATED)
    status = RedisJobTracker.from_url(fleet_env["BATCH_ROUTER_BROKER_URL"], 3600).status(job_id)
    assert status is not None and status.error.startswith("ingest chunk 1: ArrowInvalid")  # type: ignore[union-attr]
    _never_resumed(fleet_env, bucket, job_id, monkeypatch)


@pytest.mark.parametrize(
    ("case", "replacement", "needles"),
    [
        pytest.param(
            "schema",
            _parquet(pa.table({"prompt_id": ["a", "b"], "text": ["x", "y"]}), 1),
            ("InputError", "prompt"),
            id="schema",
        ),
        pytest.param(
            "row-groups",
            _parquet(prompts_table(20, "short"), 20),
            ("ArrowInvalid", "row_group"),
            id="row-groups",
        ),
    ],
)
def test_an_input_replaced_after_planning_fails_the_job_once(
    case: str,
    replacement: bytes,
    needles: tuple[str, ...],
    bucket: str,
    fleet: dict,
    fleet_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planned on a good file of two row groups, then the object is replaced (another
    schema; one row group only) before the fleet ingests it."""
    from routing.policy import load_policy
    from workers.jobs.plan import build_plan
    from workers.jobs.submit import submit
    from workers.storage import Storage

    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.put_object(Bucket=bucket, Key="in/p.parquet", Body=_parquet(prompts_table(40, case), 20))
    settings = _settings(fleet_env, monkeypatch)
    job_id = f"e2e-replaced-{case}"
    plan = build_plan(
        Storage(settings.s3),
        load_policy(),
        f"s3://{bucket}/in/p.parquet",
        f"s3://{bucket}/out/",
        20,
        job_id,
    )
    assert len(plan.chunks) == 2
    client.put_object(Bucket=bucket, Key="in/p.parquet", Body=replacement)
    submit(settings, plan)
    _assert_failed_once(client, bucket, fleet_env["BATCH_ROUTER_BROKER_URL"], job_id, *needles)
    _never_resumed(fleet_env, bucket, job_id, monkeypatch)


def test_a_policy_copy_that_no_longer_matches_fails_the_job_once(
    bucket: str, fleet: dict, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's stored policy was edited after planning: its version no longer matches the
    job's, so no worker may route with it (PolicyError). The policy is one no worker has
    loaded before (workers keep each policy version they have read)."""
    import yaml

    from routing.policy import default_policy_text, parse_policy
    from workers import layout
    from workers.jobs.plan import build_plan
    from workers.jobs.submit import submit
    from workers.storage import Storage

    data = yaml.safe_load(default_policy_text())
    data["retry"] = {**data.get("retry", {}), "max_delay_s": 7.77}
    policy = parse_policy(yaml.safe_dump(data), "e2e-policy.yaml")
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.put_object(
        Bucket=bucket, Key="in/p.parquet", Body=_parquet(prompts_table(20, "pol"), 20)
    )
    settings = _settings(fleet_env, monkeypatch)
    storage = Storage(settings.s3)
    plan = build_plan(storage, policy, f"s3://{bucket}/in/", f"s3://{bucket}/out/", 20, "e2e-pol")
    policy_uri = layout.policy(plan.context.job_root)
    edited = storage.read_bytes(policy_uri).decode().replace("7.77", "7.78")
    assert parse_policy(edited, "x").version != policy.version
    storage.write_bytes(policy_uri, edited.encode())
    submit(settings, plan)
    _assert_failed_once(
        client, bucket, fleet_env["BATCH_ROUTER_BROKER_URL"], "e2e-pol", "PolicyError", "version"
    )
