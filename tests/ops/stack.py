"""A private distributed deployment for the operations tests, and one job run on it.

Its own Redis (so queue depths and counters belong to this job only), the session's
object store and simulated provider, the metrics exporter, Flower with basic auth, and
two real Celery workers sharing one ``PROMETHEUS_MULTIPROC_DIR``. The job is run in two
steps so that a scrape mid-job sees a backlog for certain: with only the ingest worker up,
every chunk is routed and its tier batches wait in their queues; then the tier worker
starts and drains them while the exporter is scraped until the job is done.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests import services

FLOWER_USER, FLOWER_PASSWORD = "ops", "ops-test-secret-7d41"
SENTINEL = "ZQX-SENTINEL-PROMPT-3f9a"
ROWS, ROWS_PER_CHUNK, TENANT = 1200, 300, "acme"
INGEST_WORKER, TIER_WORKER = "ops-ingest", "ops-tiers"
TIER_WORKER_PROC = "worker-tiers"  # its key in OpsStack.procs
JOB_TIMEOUT_S = 60.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text → {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the ``name`` samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, lab), v in samples.items():
        if n == name:
            out[dict(lab).get(label, "")] += v
    return dict(out)


@dataclass
class Scrape:
    at: float
    job_state: str | None
    samples: Samples


@dataclass
class OpsStack:
    workdir: Path
    env: dict[str, str]
    redis_url: str
    metrics_url: str
    flower_url: str
    procs: dict[str, services.Proc] = field(default_factory=dict)

    def scrape(self) -> Samples:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return parse_metrics(response.read().decode())

    def job_state(self, job_id: str) -> str | None:
        from workers.jobstate import RedisJobTracker

        status = RedisJobTracker.from_url(self.redis_url, 3600).status(job_id)
        return None if status is None else status.state

    def worker_logs(self) -> dict[str, str]:
        return {name: proc.log_tail(10**8) for name, proc in self.procs.items() if "worker" in name}

    def all_logs(self) -> dict[str, str]:
        return {name: proc.log_tail(10**8) for name, proc in self.procs.items()}


@dataclass
class OpsJob:
    job_id: str
    bucket: str
    table: pa.Table
    backlog: Scrape  # ingest done, tier batches waiting, no tier worker yet
    during: list[Scrape]  # scrapes while the tier worker drained the queues
    final: Samples
    manifest: dict[str, Any]


def input_table() -> pa.Table:
    """Sample prompts, a few of them carrying the sentinel that must never be logged."""
    from producer.sample import sample_prompts

    table = sample_prompts(ROWS)
    prompts = table.column("prompt").to_pylist()
    for n, i in enumerate(range(50, ROWS, ROWS // 6)):
        prompts[i] = f"{SENTINEL}-{n}: explain step by step why the sky is blue at noon."
    return table.set_column(1, "prompt", pa.array(prompts, pa.string()))


def start_stack(workdir: Path, s3_endpoint: str, sim_url: str) -> OpsStack:
    redis_url, redis_proc = services.start_redis(workdir)
    prom = workdir / "prometheus-multiproc"
    prom.mkdir()
    env = services.deployment_env(
        redis_url,
        s3_endpoint,
        sim_url,
        BATCH_ROUTER_ROWS_PER_CHUNK=str(ROWS_PER_CHUNK),
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        LOG_FORMAT="json",
    )
    procs = {"redis": redis_proc}
    try:
        procs["worker-ingest"] = services.start_worker(
            workdir, ["ingest", "finalize"], env, INGEST_WORKER
        )
        metrics_url, procs["metrics"] = services.start_metrics_exporter(workdir, env)
        flower_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        flower_url, procs["flower"] = services.start_flower(
            workdir, flower_env, FLOWER_USER, FLOWER_PASSWORD
        )
        services.wait_workers_ready(redis_url, [INGEST_WORKER])
    except BaseException:
        stop_stack(procs)
        raise
    return OpsStack(workdir, env, redis_url, metrics_url, flower_url, procs)


def stop_stack(procs: Mapping[str, services.Proc]) -> None:
    for proc in reversed(list(procs.values())):
        proc.stop()


def _submit(stack: OpsStack, bucket: str, job_id: str) -> None:
    """``batch-router submit`` without ``--wait``, as a user would."""
    proc = services.submit(bucket, job_id, stack.env, "--tenant", TENANT, wait=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _poll(what: str, check: Any, timeout: float, stack: OpsStack) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {n}\n{t[-3000:]}" for n, t in stack.all_logs().items())
    raise TimeoutError(f"{what} not reached after {timeout} s\n{logs}")


def run_job(stack: OpsStack, tier_queues: list[str]) -> OpsJob:
    job_id = f"ops-{int(time.time())}"
    bucket = f"ops-{os.getpid()}-{int(time.time()) % 100000}"
    client = services.s3_client(stack.env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.create_bucket(Bucket=bucket)
    table = input_table()
    local = stack.workdir / "in.parquet"
    pq.write_table(table, local, row_group_size=ROWS_PER_CHUNK)
    client.upload_file(str(local), bucket, "in/part-0.parquet")

    _submit(stack, bucket, job_id)

    def backlog() -> Scrape | None:
        samples = stack.scrape()
        waiting = sum(total(samples, "batch_router_queue_depth", queue=q) for q in tier_queues)
        idle = (
            total(samples, "batch_router_queue_depth", queue="ingest") == 0
            and total(samples, "batch_router_queue_unacked") == 0
        )
        return Scrape(time.time(), stack.job_state(job_id), samples) if waiting and idle else None

    first = _poll("a tier backlog with every chunk ingested", backlog, 45, stack)

    stack.procs[TIER_WORKER_PROC] = services.start_worker(
        stack.workdir, tier_queues, stack.env, TIER_WORKER, concurrency=2
    )
    during: list[Scrape] = []

    def finished() -> bool:
        state = stack.job_state(job_id)
        during.append(Scrape(time.time(), state, stack.scrape()))
        return state in ("succeeded", "failed")

    _poll(f"job {job_id} finished", finished, JOB_TIMEOUT_S, stack)
    assert during[-1].job_state == "succeeded", stack.worker_logs()
    body = client.get_object(Bucket=bucket, Key=f"out/job_id={job_id}/manifest.json")["Body"]
    manifest = json.loads(body.read())
    return OpsJob(job_id, bucket, table, first, during, stack.scrape(), manifest)
