"""Issue 13, finding 1 on the real fleet (Redis ledger and claims, SeaweedFS, celery worker
processes, the simulated provider over HTTP): ``prompt_id``s repeated across chunks never
overspend a budget cap, and the rows' cost is exactly what the Redis ledger recorded."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import redis
import yaml

from tests import services
from tests.budget_repro import (
    CAP,
    PER_CHUNK,
    assert_cap_held,
    capped_policy_data,
    money,
    repeated_ids,
)
from workers.guards.ledger_redis import RedisLedger
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.security]


def test_repeated_prompt_ids_never_overspend_on_the_fleet(
    bucket: str, fleet: dict, fleet_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    """The issue's reproduction: 200 different prompts with ids ``p{i % 10}``, 10 rows per
    chunk, ``budgets: {on_exhausted: over_budget, job: {usd: "0.003"}}`` (before the fix:
    198 rows ok, $0.0079 spent)."""
    policy = tmp_path / "capped.yaml"
    policy.write_text(yaml.safe_dump(capped_policy_data()))
    table = repeated_ids()
    local = tmp_path / "in.parquet"
    pq.write_table(table, local)
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.upload_file(str(local), bucket, "in/part-0.parquet")

    job_id = "fleet-dup-ids"
    env = {**fleet_env, "BATCH_ROUTER_ROWS_PER_CHUNK": str(PER_CHUNK)}
    proc = services.submit(bucket, job_id, env, "--policy", str(policy), timeout=600)
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "".join(p.log_tail() for p in fleet.values())
    )

    storage = Storage(
        S3Settings(
            endpoint_url=fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"],
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )
    root = f"s3://{bucket}/out/job_id={job_id}"
    manifest = json.loads(storage.read_bytes(f"{root}/manifest.json"))
    out = pl.from_arrow(storage.read_parquet(f"{root}/results"))
    assert isinstance(out, pl.DataFrame)
    ledger = RedisLedger(redis.Redis.from_url(redis_url)).usage(f"job:{job_id}")
    # one row per id keeps it (whichever chunk claimed it first); the rest are rejected
    kept = assert_cap_held(manifest, out, ledger)
    spent = money(out["cost_usd"].to_list())
    print(
        f"\nfleet, repeated ids: {kept.filter(pl.col('status') == 'ok').height} rows ok, "
        f"${spent} spent against a ${CAP} cap (ledger ${ledger.settled_usd})"
    )
