"""The S3 drop folder: real ``batch-router watch`` processes against the ops stack's
SeaweedFS, Redis, Celery workers and simulated provider (and, for sqs mode, moto server's
S3 + SQS with genuine bucket notifications and a fleet reading from moto)."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producer.sample import sample_prompts
from tests import services
from tests.ops import stack as ops

pytestmark = [pytest.mark.ops, pytest.mark.integration, pytest.mark.timeout(300)]

LEASE_S = 5
CORRUPT = b"PAR1" + b"\x00garbage, not a parquet footer\x00" * 8 + b"PAR1"


def _env(stack: ops.OpsStack, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **stack.env,
        "BATCH_ROUTER_WATCH_POLL_S": "0.5",
        "BATCH_ROUTER_WATCH_LEASE_S": str(LEASE_S),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _watch_cmd(bucket: str, *args: str) -> list[str]:
    inbox, out = f"s3://{bucket}/inbox/", f"s3://{bucket}/out/"
    return [sys.executable, "-m", "producer", "watch", inbox, "--output", out, *args]


def _start_watcher(
    stack: ops.OpsStack, bucket: str, name: str, *args: str, **env: str
) -> services.Proc:
    log = stack.workdir / f"watch-{bucket}-{name}.log"
    return services.start(_watch_cmd(bucket, *args), log, name, env=_env(stack, **env))


def _parquet(rows: int, seed: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(sample_prompts(rows, seed=seed), sink, row_group_size=ops.ROWS_PER_CHUNK)
    return sink.getvalue()


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _wait(what: str, check: Callable[[], Any], timeout: float, procs: list[services.Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    logs = "\n".join(f"--- {p.name}\n{p.log_tail(3000)}" for p in procs)
    raise TimeoutError(f"{what} not reached after {timeout} s\n{logs}")


def _jobs_for(redis_url: str, uri: str) -> list[Any]:
    """Every job registered in Redis whose input is ``uri`` (the exactly-once check)."""
    from workers.jobstate import RedisJobTracker

    jobs = RedisJobTracker.from_url(redis_url, 3600)
    found = [jobs.status(j) for j in jobs.list_jobs(limit=100_000)]
    return [s for s in found if s is not None and s.meta.get("input_uri") == uri]


def _results(client: Any, bucket: str, job_id: str) -> pa.Table:
    keys = _keys(client, bucket, f"out/job_id={job_id}/results/")
    tables = [
        pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=k)["Body"].read()))
        for k in keys
        if k.endswith(".parquet")
    ]
    return pa.concat_tables(tables)


def _stop(proc: services.Proc, timeout: float = 30) -> int:
    proc.popen.send_signal(signal.SIGTERM)
    return proc.popen.wait(timeout)


@pytest.fixture
def drop_bucket(ops_fleet: ops.OpsStack) -> str:
    name = f"drop-{uuid.uuid4().hex[:10]}"
    services.s3_client(ops_fleet.env["BATCH_ROUTER_S3__ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name


def test_two_watchers_process_each_dropped_file_exactly_once(
    ops_fleet: ops.OpsStack, drop_bucket: str
) -> None:
    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    files = {
        "inbox/acme/a.parquet": (_parquet(40, seed=1), "acme"),
        "inbox/globex/b.parquet": (_parquet(30, seed=2), "globex"),
        "inbox/acme/sub/c.parquet": (_parquet(25, seed=3), "acme"),
    }
    (first, *later) = files
    client.put_object(Bucket=bucket, Key=first, Body=files[first][0])
    watchers = [_start_watcher(stack, bucket, f"w{i}") for i in (1, 2)]
    try:
        processed = lambda: _keys(client, bucket, "processed/")  # noqa: E731
        _wait("the first file processed", processed, 90, watchers)
        for key in later:  # dropped at different times, the fleet already busy
            client.put_object(Bucket=bucket, Key=key, Body=files[key][0])
            time.sleep(1.0)
        client.put_object(Bucket=bucket, Key="inbox/acme/broken.parquet", Body=CORRUPT)
        _wait(
            "every file moved out of the inbox",
            lambda: (
                not _keys(client, bucket, "inbox/")
                and len(processed()) == 3
                and len(_keys(client, bucket, "failed/")) == 2
            ),
            120,
            watchers,
        )
        time.sleep(2 * 0.5)  # two more listings each: nothing may be picked up again
    finally:
        codes = [_stop(w) for w in watchers]
    logs = "".join(w.log_tail(10**7) for w in watchers)
    assert codes == [0, 0], logs

    for key, (body, tenant) in files.items():
        uri = f"s3://{bucket}/{key}"
        jobs = _jobs_for(stack.redis_url, uri)
        assert len(jobs) == 1, (uri, [j.job_id for j in jobs], logs)
        job = jobs[0]
        assert job.state == "succeeded" and job.meta["tenant"] == tenant, job
        assert logs.count(f"submitted {uri} as job") == 1, logs
        name = key.split("/", 2)[2]
        moved = f"processed/{tenant}/{job.job_id}/{name}"
        assert moved in processed(), processed()
        assert client.get_object(Bucket=bucket, Key=moved)["Body"].read() == body
        results = _results(client, bucket, job.job_id)
        assert results.num_rows == pq.read_metadata(io.BytesIO(body)).num_rows
        assert set(results.column("tenant").to_pylist()) == {tenant}  # from the folder

    failed = _keys(client, bucket, "failed/")
    broken = next(k for k in failed if k.endswith("broken.parquet"))
    _, tenant, job_id, _ = broken.split("/")
    assert tenant == "acme" and f"failed/acme/{job_id}/error.json" in failed
    error = json.loads(
        client.get_object(Bucket=bucket, Key=f"failed/acme/{job_id}/error.json")["Body"].read()
    )
    assert error["stage"] == "plan" and error["file"].endswith("inbox/acme/broken.parquet")
    assert "not a readable Parquet file" in error["error"], error
    assert client.get_object(Bucket=bucket, Key=broken)["Body"].read() == CORRUPT
    assert _jobs_for(stack.redis_url, f"s3://{bucket}/inbox/acme/broken.parquet") == []


def test_a_dead_watchers_file_is_adopted_not_resubmitted(
    ops_fleet: ops.OpsStack, drop_bucket: str
) -> None:
    """SIGKILL after submitting: the lease expires and another watcher adopts the same job.
    SIGTERM mid-job: exit 0 at once, the lease is handed back, ``--once`` finishes it."""
    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    rows = 6 * ops.ROWS_PER_CHUNK  # long enough to still be running when killed
    client.put_object(Bucket=bucket, Key="inbox/acme/big.parquet", Body=_parquet(rows, seed=4))
    uri = f"s3://{bucket}/inbox/acme/big.parquet"
    doomed = _start_watcher(stack, bucket, "doomed")
    procs = [doomed]
    try:
        _wait("the job submitted", lambda: f"submitted {uri}" in doomed.log_tail(10**6), 60, procs)
        doomed.kill()
        assert "processed" not in doomed.log_tail(10**6).split(f"submitted {uri}")[1]
        heir = _start_watcher(stack, bucket, "heir")
        procs.append(heir)
        _wait("the file processed", lambda: _keys(client, bucket, "processed/"), 120, procs)
        assert _stop(heir) == 0
    finally:
        for p in procs:
            p.kill()
    (job,) = _jobs_for(stack.redis_url, uri)
    assert f"adopted job {job.job_id} of {uri}" in heir.log_tail(10**6)
    assert "submitted" not in heir.log_tail(10**6)
    assert _keys(client, bucket, "processed/") == [f"processed/acme/{job.job_id}/big.parquet"]

    # SIGTERM while a job runs: handed back (exit 0, lease released), then --once adopts it
    client.put_object(Bucket=bucket, Key="inbox/globex/big.parquet", Body=_parquet(rows, seed=5))
    uri = f"s3://{bucket}/inbox/globex/big.parquet"
    leaving = _start_watcher(stack, bucket, "leaving")
    try:
        _wait(
            "the job submitted",
            lambda: f"submitted {uri}" in leaving.log_tail(10**6),
            60,
            [leaving],
        )
        assert _stop(leaving, timeout=15) == 0, leaving.log_tail()
    finally:
        leaving.kill()
    assert "handed-back" in leaving.log_tail(10**6), leaving.log_tail()
    once = services.subprocess.run(
        _watch_cmd(bucket, "--once"), env=_env(stack), capture_output=True, text=True, timeout=120
    )
    assert once.returncode == 0, once.stdout + once.stderr
    (job,) = _jobs_for(stack.redis_url, uri)
    assert f"adopted job {job.job_id}" in once.stdout, once.stdout
    assert f"processed/globex/{job.job_id}/big.parquet" in _keys(client, bucket, "processed/")


def test_watch_once_exits_1_when_a_file_fails(ops_fleet: ops.OpsStack, drop_bucket: str) -> None:
    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.put_object(Bucket=bucket, Key="inbox/acme/good.parquet", Body=_parquet(20, seed=6))
    client.put_object(Bucket=bucket, Key="inbox/acme/notes.csv", Body=b"prompt_id,prompt\n1,hi\n")
    client.put_object(Bucket=bucket, Key="inbox/stray.parquet", Body=_parquet(20, seed=7))
    client.put_object(Bucket=bucket, Key="inbox/acme/_tmp/upload.parquet", Body=CORRUPT)
    once = services.subprocess.run(
        _watch_cmd(bucket, "--once"), env=_env(stack), capture_output=True, text=True, timeout=120
    )
    assert once.returncode == 1, once.stdout + once.stderr
    assert "1 processed, 2 failed" in once.stderr, once.stderr
    assert _keys(client, bucket, "inbox/") == ["inbox/acme/_tmp/upload.parquet"]  # hidden
    errors = {
        k.split("/")[1]: json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())
        for k in _keys(client, bucket, "failed/")
        if k.endswith("error.json")
    }
    assert "not a .parquet file" in errors["acme"]["error"]
    assert "not in a tenant folder" in errors["_no-tenant"]["error"]
    (moved,) = _keys(client, bucket, "processed/acme/")
    job_id = moved.split("/")[2]

    # the same file (key, ETag, size) dropped again: not run again, failed/ says why
    client.put_object(Bucket=bucket, Key="inbox/acme/good.parquet", Body=_parquet(20, seed=6))
    again = services.subprocess.run(
        _watch_cmd(bucket, "--once"), env=_env(stack), capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 1, again.stdout + again.stderr
    assert len(_jobs_for(stack.redis_url, f"s3://{bucket}/inbox/acme/good.parquet")) == 1
    duplicate = [
        json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())
        for k in _keys(client, bucket, "failed/acme/")
        if k.endswith("error.json")
    ]
    assert any(f"already handled as job {job_id}" in e["error"] for e in duplicate), duplicate


# ---------------------------------------------------------------- in-process watchers


def _watchers(
    stack: ops.OpsStack, bucket: str, monkeypatch: pytest.MonkeyPatch, count: int
) -> list[Any]:
    """``count`` watchers in this process (each with its own lease owner), so a test can
    hold one inside planning while another takes its turn."""
    from producer.watch.watcher import Watcher
    from routing.policy import load_policy
    from workers.settings import Settings

    for name, value in _env(stack).items():
        if name.startswith("BATCH_ROUTER_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    policy = load_policy(settings.policy_path)
    inbox, out = f"s3://{bucket}/inbox/", f"s3://{bucket}/out/"
    return [Watcher(settings, policy, inbox, out) for _ in range(count)]


def _hold_planning(monkeypatch: pytest.MonkeyPatch, during: Callable[[], None]) -> None:
    """The first plan reads its footers only after ``during()`` returns (in the planner's
    thread) — a slow planner, on the real object store."""
    from workers.jobs import plan

    real, held = plan.read_footers, threading.Lock()

    def read_footers(*args: Any, **kwargs: Any) -> Any:
        if held.acquire(blocking=False):
            during()
        return real(*args, **kwargs)

    monkeypatch.setattr(plan, "read_footers", read_footers)


def _count_submissions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids passed to ``workers.jobs.submit.submit`` (register + enqueue) in this process."""
    from workers.jobs import submit

    calls: list[str] = []
    real = submit.submit

    def counted(settings: Any, plan: Any) -> None:
        calls.append(plan.context.job_id)
        real(settings, plan)

    monkeypatch.setattr(submit, "submit", counted)
    return calls


def test_a_plan_outlasting_the_lease_keeps_it_and_submits_once(
    ops_fleet: ops.OpsStack, drop_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning takes longer than the lease: the lease is renewed meanwhile, so a second
    watcher finds the file busy instead of adopting the job id and submitting it too."""
    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.put_object(Bucket=bucket, Key="inbox/acme/slow.parquet", Body=_parquet(30, seed=8))
    first, second = _watchers(stack, bucket, monkeypatch, 2)
    (f,) = first.inbox.list()
    submissions = _count_submissions(monkeypatch)
    meanwhile: list[Any] = []

    def other_watcher_tries() -> None:
        time.sleep(LEASE_S + 1.5)  # past the lease's term: only renewal still holds it
        meanwhile.append(second.handle(f))

    _hold_planning(monkeypatch, other_watcher_tries)
    try:
        result = first.handle(f)
    finally:
        first.drain()
        second.drain()
    assert [r.outcome for r in meanwhile] == ["busy"], meanwhile
    assert result.outcome == "processed", result
    assert submissions == [result.job_id]
    assert [j.job_id for j in _jobs_for(stack.redis_url, f.uri)] == [result.job_id]
    assert _keys(client, bucket, "processed/") == [f"processed/acme/{result.job_id}/slow.parquet"]


def test_a_watcher_losing_the_registration_race_waits_for_the_winners_job(
    ops_fleet: ops.OpsStack, drop_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another submitter registers the file's job id while this watcher plans it: the
    atomic registration refuses the second one, which waits for that job instead."""
    from workers.jobs.submit import submit_job

    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.put_object(Bucket=bucket, Key="inbox/acme/race.parquet", Body=_parquet(30, seed=9))
    (watcher,) = _watchers(stack, bucket, monkeypatch, 1)
    (f,) = watcher.inbox.list()
    submissions = _count_submissions(monkeypatch)

    def rival_submits() -> None:
        job_id, _ = watcher.claims.job_for(f, "unused")  # the id this watcher recorded
        submit_job(watcher.settings, watcher.policy, f.uri, watcher.output, job_id, "acme")

    _hold_planning(monkeypatch, rival_submits)
    try:
        result = watcher.handle(f)
    finally:
        watcher.drain()
    assert result.outcome == "processed", result
    assert submissions == [result.job_id, result.job_id]  # the rival's, then refused
    assert [j.job_id for j in _jobs_for(stack.redis_url, f.uri)] == [result.job_id]
    (job,) = _jobs_for(stack.redis_url, f.uri)
    assert job.state == "succeeded" and job.chunks_done == job.total_chunks, job


def test_a_file_replaced_while_its_job_ran_stays_in_the_inbox_as_a_new_file(
    ops_fleet: ops.OpsStack, drop_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy to processed/ is pinned to the job's version (CopySourceIfMatch, honoured
    by SeaweedFS): a newer version is neither copied nor deleted, and runs as its own job."""
    stack, bucket = ops_fleet, drop_bucket
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    key, old, new = "inbox/acme/daily.parquet", _parquet(20, seed=10), _parquet(25, seed=11)
    client.put_object(Bucket=bucket, Key=key, Body=old)
    (watcher,) = _watchers(stack, bucket, monkeypatch, 1)
    (f,) = watcher.inbox.list()
    _hold_planning(monkeypatch, lambda: client.put_object(Bucket=bucket, Key=key, Body=new))
    try:
        result = watcher.handle(f)
        assert result.outcome == "replaced", result
        assert f"while job {result.job_id} ran" in result.detail
        assert _keys(client, bucket, "processed/") == []
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == new
        assert (watcher.claims.done(f) or {}).get("outcome") == "replaced"
        (g,) = watcher.inbox.list()  # the new version: a new file, handled on its own
        assert g.etag != f.etag and watcher.claims.done(g) is None
        again = watcher.handle(g)
    finally:
        watcher.drain()
    assert again.outcome == "processed" and again.job_id != result.job_id, again
    (moved,) = _keys(client, bucket, "processed/")
    assert client.get_object(Bucket=bucket, Key=moved)["Body"].read() == new
    assert _keys(client, bucket, "inbox/") == []


# ---------------------------------------------------------------- sqs mode (moto)


def _aws_multipart_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2 answers CompleteMultipartUpload with a ``<CompleteMultipartUploadResponse>``
    root; S3 (and the AWS C++ SDK inside pyarrow, which then reports "error embedded in a
    200 OK response") use ``<CompleteMultipartUploadResult>``. Rename it, nothing else."""
    from moto.s3 import responses

    original = responses.S3Response._key_response_post

    def fixed(self: Any, *args: Any, **kwargs: Any) -> Any:
        status, headers, body = original(self, *args, **kwargs)
        if isinstance(body, str):
            body = body.replace("CompleteMultipartUploadResponse", "CompleteMultipartUploadResult")
        return status, headers, body

    monkeypatch.setattr(responses.S3Response, "_key_response_post", fixed)


@pytest.fixture
def moto_fleet(
    tmp_path: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """moto server (S3 + SQS) on a free port, a private Redis and one Celery worker on
    every queue whose object store is moto: (moto endpoint, redis url, env)."""
    from moto.server import ThreadedMotoServer

    from routing.policy import load_policy
    from workers.queues import tier_queue

    _aws_multipart_root(monkeypatch)
    port = services.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    redis_url, redis_proc = services.start_redis(tmp_path)
    endpoint = f"http://127.0.0.1:{port}"
    env = services.deployment_env(
        redis_url,
        endpoint,
        sim_url,
        BATCH_ROUTER_SQS_ENDPOINT_URL=endpoint,
        BATCH_ROUTER_ROWS_PER_CHUNK=str(ops.ROWS_PER_CHUNK),
        AWS_DEFAULT_REGION="us-east-1",
    )
    queues = ["ingest", "finalize", *(tier_queue(t) for t in load_policy().tier_names)]
    worker = services.start_worker(tmp_path, queues, env, "moto-fleet", concurrency=2)
    try:
        services.wait_workers_ready(redis_url, ["moto-fleet"])
        yield endpoint, redis_url, env
    finally:
        worker.stop()
        redis_proc.stop()
        server.stop()


def test_sqs_mode_handles_real_s3_notifications_once(
    moto_fleet: tuple[str, str, dict[str, str]],
) -> None:
    """moto sends the genuine test event and ObjectCreated events (URL-encoded keys); the
    events are then delivered again, in reverse order (at-least-once, unordered)."""
    import boto3

    endpoint, redis_url, env = moto_fleet
    creds = {"aws_access_key_id": services.S3_KEY, "aws_secret_access_key": services.S3_SECRET}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", **creds)
    bucket = "drop-sqs"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName="drop-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    notification = {
        "QueueConfigurations": [
            {
                "QueueArn": arn["Attributes"]["QueueArn"],
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inbox/"}]}},
            }
        ]
    }
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notification)
    good = {"inbox/acme/night run+1.parquet": "acme", "inbox/globex/b.parquet": "globex"}
    for n, key in enumerate(good):
        s3.put_object(Bucket=bucket, Key=key, Body=_parquet(30, seed=10 + n))
    s3.put_object(Bucket=bucket, Key="inbox/globex/bad.parquet", Body=CORRUPT)

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    bodies = [m["Body"] for m in received["Messages"]]
    assert any('"s3:TestEvent"' in b for b in bodies), bodies
    assert any("night+run%2B1.parquet" in b for b in bodies), bodies  # URL-encoded key
    for m in received["Messages"]:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    for body in reversed(bodies):
        if "Records" in body:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    cmd = [
        *_watch_cmd(bucket, "--once", "--mode", "sqs", "--queue-url", queue_url),
    ]
    run_env = {**os.environ, **env, "BATCH_ROUTER_WATCH_LEASE_S": str(LEASE_S)}
    once = services.subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=180)
    out = once.stdout + once.stderr
    assert once.returncode == 1, out  # the corrupt file failed
    assert "S3 test event received" in out and "2 processed, 1 failed" in out, out

    processed = _keys(s3, bucket, "processed/")
    for key, tenant in good.items():
        (job,) = _jobs_for(redis_url, f"s3://{bucket}/{key}")
        assert job.state == "succeeded" and job.meta["tenant"] == tenant
        assert f"processed/{tenant}/{job.job_id}/{key.split('/')[2]}" in processed
        assert _results(s3, bucket, job.job_id).num_rows == 30
    failed = _keys(s3, bucket, "failed/globex/")
    assert any(k.endswith("/bad.parquet") for k in failed), failed
    assert _keys(s3, bucket, "inbox/") == []
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }, attrs  # every event, duplicate and the test event deleted once handled


def test_event_parsing_and_layout_without_services() -> None:
    from producer.watch.claims import DropFile
    from producer.watch.sqs import object_keys
    from producer.watch.store import DropFolder

    created = {
        "Records": [
            {
                "eventName": "ObjectCreated:CompleteMultipartUpload",
                "s3": {
                    "bucket": {"name": "in"},
                    "object": {"key": "inbox/acme/a+b%2B%C3%A9.parquet"},
                },
            },
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "in"}, "object": {"key": "x"}},
            },
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "other"}, "object": {"key": "y"}},
            },
        ]
    }
    assert object_keys(json.dumps(created), "in") == ["inbox/acme/a b+é.parquet"]
    via_sns = {"Type": "Notification", "Message": json.dumps(created)}
    assert object_keys(json.dumps(via_sns), "in") == ["inbox/acme/a b+é.parquet"]
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "in"}
    assert object_keys(json.dumps(test_event), "in") is None
    assert object_keys("not json", "in") is None

    folder = DropFolder.parse("s3://in/drop/inbox")
    f = DropFile("in", "drop/inbox/acme/2026/a.parquet", "e", 1)
    assert folder.tenant_and_name(f.key) == ("acme", "2026/a.parquet")
    assert folder.destination("processed", f, "J") == "drop/processed/acme/J/2026/a.parquet"
    assert folder.error_key(f, "J") == "drop/failed/acme/J/error.json"
    stray = DropFile("in", "drop/inbox/a.parquet", "e", 1)
    assert folder.destination("failed", stray, "J") == "drop/failed/_no-tenant/J/a.parquet"
    assert not folder.contains("drop/inbox/acme/") and not folder.contains("drop/other/a")
    with pytest.raises(ValueError, match="s3://"):
        DropFolder.parse("/local/inbox")
