"""What the fault tests on the real fleet share (tests/e2e/test_faults.py,
tests/e2e/test_batch_faults.py): the prompts they send, the deployment's environment, the
worker processes of one deployment, submitting and waiting, reading results, reporting
figures."""

from __future__ import annotations

import json
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import services
from workers.settings import S3Settings
from workers.storage import Storage

TIERS = ("fast", "balanced", "expert")

ALL_EXPERT = {"fast": {"max_score": 0.00001}, "balanced": {"max_score": 0.00002}}
ALL_FAST = {"fast": {"max_score": 0.99}, "balanced": {"max_score": 0.995}}


def prompts(n: int, tag: str) -> pa.Table:
    """``n`` distinct prompts (no dedupe: one provider call each when nothing fails)."""
    topics = ("tides", "volcanoes", "compilers", "photosynthesis", "tariffs", "glaciers")
    return pa.table(
        {
            "prompt_id": [f"{tag}-{i:05d}" for i in range(n)],
            "prompt": [
                f"Question {tag}-{i}: in two sentences, what causes {topics[i % 6]}? ({i})"
                for i in range(n)
            ],
        }
    )


def storage(env: dict[str, str]) -> Storage:
    return Storage(
        S3Settings(
            endpoint_url=env["BATCH_ROUTER_S3__ENDPOINT_URL"],
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )


def upload(env: dict[str, str], bucket: str, table: pa.Table, tmp_path: Path) -> None:
    local = tmp_path / "in.parquet"
    pq.write_table(table, local, row_group_size=500)
    services.s3_client(env["BATCH_ROUTER_S3__ENDPOINT_URL"]).upload_file(
        str(local), bucket, "in/prompts.parquet"
    )


def submit(
    env: dict[str, str], bucket: str, job_id: str, policy: Path, *extra: str, wait: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = services.submit(
        bucket,
        job_id,
        env,
        "--policy",
        str(policy),
        *extra,
        wait=wait,
        timeout=400 if wait else 120,
    )
    if not wait:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def job_root(bucket: str, job_id: str) -> str:
    return f"s3://{bucket}/out/job_id={job_id}"


def wait_success(st: Storage, root: str, timeout: float, fleet: Fleet) -> None:
    deadline = time.monotonic() + timeout
    while not st.exists(f"{root}/_SUCCESS"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{root} not finished after {timeout} s\n" + fleet.logs())
        time.sleep(0.5)


def results(st: Storage, root: str) -> pl.DataFrame:
    df = pl.from_arrow(st.read_parquet(f"{root}/results"))
    assert isinstance(df, pl.DataFrame)
    return df


def money(values: list[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))


def report(capsys: pytest.CaptureFixture[str], scenario: str, **figures: Any) -> None:
    with capsys.disabled():
        print(f"\n[faults] {scenario}: " + json.dumps(figures, default=str))


class Fleet:
    """Worker processes of one deployment (started and stopped by the tests)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.procs: dict[str, services.Proc] = {}

    def start(self, name: str, queues: list[str], concurrency: int = 1) -> services.Proc:
        proc = services.start_worker(self.workdir, queues, self.env, name, concurrency)
        self.procs[name] = proc
        return proc

    def start_default(self, expert_concurrency: int = 1) -> Fleet:
        self.start("ingest", ["ingest", "finalize"], concurrency=2)
        for tier in TIERS:
            self.start(tier, [f"tier.{tier}"], expert_concurrency if tier == "expert" else 1)
        self.ready()
        return self

    def ready(self) -> None:
        services.wait_workers_ready(self.env["BATCH_ROUTER_BROKER_URL"], list(self.procs))

    def logs(self) -> str:
        return "".join(f"\n--- {n}\n{p.log_tail(3000)}" for n, p in self.procs.items())

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def make_env(redis_url: str, s3_endpoint: str, sim_url: str) -> dict[str, str]:
    return services.deployment_env(
        redis_url,
        s3_endpoint,
        sim_url,
        BATCH_ROUTER_ROWS_PER_CHUNK="500",
        BATCH_ROUTER_VISIBILITY_TIMEOUT_S="10",  # redelivery of a killed worker's task
        BATCH_ROUTER_REQUEST_TIMEOUT_S="1",
    )
