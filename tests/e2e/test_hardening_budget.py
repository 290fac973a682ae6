"""Issue 13, finding 1 on the real fleet (Redis ledger and claims, SeaweedFS, celery worker
processes, the simulated provider over HTTP): ``prompt_id``s repeated across chunks never
overspend a budget cap, and the rows' cost is exactly what the Redis ledger recorded."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import yaml

from routing.policy import default_policy_text
from tests import services
from workers.guards.ledger import RedisLedger
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.security]

CAP, ROWS, IDS = Decimal("0.003"), 200, 10


def test_repeated_prompt_ids_never_overspend_on_the_fleet(
    bucket: str, fleet: dict, fleet_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    """The issue's reproduction: 200 different prompts with ids ``p{i % 10}``, 10 rows per
    chunk, ``budgets: {on_exhausted: over_budget, job: {usd: "0.003"}}`` (before the fix:
    198 rows ok, $0.0079 spent)."""
    data = yaml.safe_load(default_policy_text())
    data["budgets"] = {"on_exhausted": "over_budget", "job": {"usd": str(CAP)}}
    data["cache"] = {"enabled": False}
    policy = tmp_path / "capped.yaml"
    policy.write_text(yaml.safe_dump(data))
    table = pa.table(
        {
            "prompt_id": [f"p{i % IDS}" for i in range(ROWS)],
            "prompt": [
                f"Case {i}: describe the water cycle and its stages ({i * 31})."
                for i in range(ROWS)
            ],
        }
    )
    local = tmp_path / "in.parquet"
    pq.write_table(table, local)
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.upload_file(str(local), bucket, "in/part-0.parquet")

    job_id = "fleet-dup-ids"
    env = {**fleet_env, "BATCH_ROUTER_ROWS_PER_CHUNK": "10"}
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
    spent = sum(out["cost_usd"].to_list(), Decimal(0))
    ledger = RedisLedger(redis.Redis.from_url(redis_url)).usage(f"job:{job_id}")

    assert out.height == ROWS == manifest["rows_in"] == manifest["rows_out"]
    assert spent <= CAP
    assert ledger.settled_usd == spent and ledger.reserved_usd == 0
    assert Decimal(manifest["totals"]["cost_usd"]) == spent
    # one row per id keeps it (whichever chunk claimed it first); the rest are rejected
    dup = out.filter(pl.col("error") == "duplicate prompt_id")
    assert dup.height == ROWS - IDS and (dup["status"] == "rejected").all()
    kept = out.filter(pl.col("error").fill_null("") != "duplicate prompt_id")
    assert sorted(kept["prompt_id"].to_list()) == [f"p{i}" for i in range(IDS)]
    print(
        f"\nfleet, repeated ids: {kept.filter(pl.col('status') == 'ok').height} rows ok, "
        f"${spent} spent against a ${CAP} cap (ledger ${ledger.settled_usd})"
    )
