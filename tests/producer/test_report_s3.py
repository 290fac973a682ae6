"""``batch-router report`` over jobs in a real S3-compatible store (SeaweedFS): polars
scans the cost rollups by ``s3://`` URI with the configured endpoint and keys."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests import services
from tests.cli import CliRunner, assert_clean_error
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_report_over_s3_jobs(s3_endpoint: str, bucket: str, cli: CliRunner) -> None:
    env = {
        "BATCH_ROUTER_S3__ENDPOINT_URL": s3_endpoint,
        "BATCH_ROUTER_S3__ACCESS_KEY_ID": services.S3_KEY,
        "BATCH_ROUTER_S3__SECRET_ACCESS_KEY": services.S3_SECRET,
    }
    root = f"s3://{bucket}/nightly"
    manifests = {}
    for job, tenant in (("n1", "acme"), ("n2", "globex")):
        proc = cli(
            "run", "--sample", "60", "--output", root, "--job-id", job, "--tenant", tenant,
            "--json", **env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        manifests[job] = json.loads(proc.stdout)
    storage = Storage(
        S3Settings(
            endpoint_url=s3_endpoint,
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )
    day = manifests["n1"]["created_at"][:10]
    assert storage.exists(f"{root}/job_id=n1/cost/day={day}/tenant=acme/part-0.parquet")

    proc = cli("report", root, "--json", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["jobs"] == 2 and report["totals"]["rows"] == 120
    for key in ("cost_usd", "baseline_cost_usd", "dedupe_saved_usd"):
        assert Decimal(report["totals"][key]) == sum(
            Decimal(m["totals"][key]) for m in manifests.values()
        )
    assert set(report["by_tenant"]) == {"acme", "globex"}

    proc = cli("report", f"{root}/job_id=n2", "--tenant", "globex", "--json", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    globex = json.loads(proc.stdout)
    assert globex["totals"]["cost_usd"] == f"{Decimal(manifests['n2']['totals']['cost_usd']):f}"

    proc = cli("report", f"s3://{bucket}/elsewhere", **env)
    assert_clean_error(proc, "elsewhere", "no finished job")
