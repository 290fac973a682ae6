"""End to end on real components: SeaweedFS → `batch-router submit --wait` → Redis broker
→ real `celery worker` processes per queue → simulated provider over HTTP → costed Parquet
back in the object store."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.schema import RESULT_COLUMNS
from tests import services
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

GROUP, DUPS_PER_GROUP, GROUPS = 1000, 100, 6


def _sim_stats(sim_url: str) -> dict[str, int]:
    with urllib.request.urlopen(sim_url.removesuffix("/v1") + "/_sim/stats", timeout=5) as r:
        return dict(json.load(r))


def _submit(
    bucket: str, job_id: str, env: dict[str, str], *extra: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    return services.submit(bucket, job_id, env, *extra, timeout=timeout)


def _input_table(corpus: Path) -> tuple[pa.Table, int]:
    """6,000 rows: 5,400 distinct real prompts + 600 deliberate duplicates placed in the
    same 1,000-row group as their original; two rows with an empty prompt."""
    df = pl.read_parquet(corpus).unique("prompt", keep="first", maintain_order=True)
    df = df.sample(n=GROUPS * (GROUP - DUPS_PER_GROUP), seed=11, shuffle=True)
    df = df.select("prompt_id", "prompt", "source", "kind")
    parts = []
    for g in range(GROUPS):
        block = df.slice(g * (GROUP - DUPS_PER_GROUP), GROUP - DUPS_PER_GROUP)
        dups = block.sample(n=DUPS_PER_GROUP, seed=g).with_columns(
            (pl.col("prompt_id") + "-dup").alias("prompt_id")
        )
        parts.append(pl.concat([block, dups]).sample(fraction=1.0, seed=g, shuffle=True))
    table = (
        pl.concat(parts)
        .with_row_index("n")
        .with_columns(
            pl.when(pl.col("n").is_in([5, 4321]))
            .then(pl.lit("   "))
            .otherwise(pl.col("prompt"))
            .alias("prompt")
        )
        .drop("n")
    )
    distinct = table.filter(pl.col("prompt").str.strip_chars() != "")["prompt"].n_unique()
    return table.to_arrow(), distinct


def test_distributed_job_end_to_end(
    corpus_path: Path,
    bucket: str,
    fleet: dict,
    fleet_env: dict[str, str],
    sim_url: str,
    tmp_path: Path,
) -> None:
    table, distinct = _input_table(corpus_path)
    local = tmp_path / "in.parquet"
    half = table.num_rows // 2
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    for i, piece in enumerate((table.slice(0, half), table.slice(half))):
        pq.write_table(piece, local, row_group_size=GROUP)
        client.upload_file(str(local), bucket, f"in/part-{i}.parquet")
    before = _sim_stats(sim_url)

    job_id = "e2e-distributed"
    proc = _submit(bucket, job_id, fleet_env, "--tenant", "acme", timeout=600)
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "".join(p.log_tail() for p in fleet.values())
    )
    after = _sim_stats(sim_url)

    storage = Storage(
        S3Settings(
            endpoint_url=fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"],
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )
    root = f"s3://{bucket}/out/job_id={job_id}"
    assert storage.exists(f"{root}/_SUCCESS")
    manifest = json.loads(storage.read_bytes(f"{root}/manifest.json"))
    out = pl.from_arrow(storage.read_parquet(f"{root}/results"))
    assert isinstance(out, pl.DataFrame)

    # one row out per row in, every listed column present, unknown columns carried through
    assert out.height == table.num_rows == manifest["rows_in"] == manifest["rows_out"]
    assert set(RESULT_COLUMNS) <= set(out.columns) and {"source", "kind"} <= set(out.columns)
    assert sorted(out["prompt_id"].to_list()) == sorted(table.column("prompt_id").to_pylist())
    assert set(out["status"].unique()) == {"ok", "rejected"}
    assert out.filter(pl.col("status") == "rejected")["error"].to_list() == ["prompt is empty"] * 2
    assert out["tenant"].unique().to_list() == ["acme"]

    # routing spread and costs
    ok = out.filter(pl.col("status") == "ok")
    assert ok["tier"].n_unique() >= 2
    total = sum(ok["cost_usd"].to_list(), Decimal(0))
    assert str(total) == manifest["totals"]["cost_usd"]
    summary = pl.from_arrow(storage.read_parquet(f"{root}/cost/summary.parquet"))
    assert isinstance(summary, pl.DataFrame)
    assert sum(summary["cost_usd"].to_list(), Decimal(0)) == total
    assert summary["rows"].sum() == out.height
    assert (ok["baseline_cost_usd"] >= ok["cost_usd"]).all()

    # duplicates: marked, answered with the canonical answer, sent to the provider once
    dups = out.filter(pl.col("dedupe_of").is_not_null())
    assert dups.height == GROUPS * DUPS_PER_GROUP
    canon = out.select(pl.col("prompt_id").alias("dedupe_of"), pl.col("response").alias("canon"))
    joined = dups.join(canon, on="dedupe_of")
    assert (joined["response"] == joined["canon"]).all()
    assert (dups["cost_usd"] == 0).all()
    calls = after["completions"] - before["completions"]
    assert calls == distinct == ok.filter(pl.col("dedupe_of").is_null()).height
    assert after["duplicate_prompts"] - before["duplicate_prompts"] == 0


def test_distributed_job_of_zero_rows_finishes(
    bucket: str, fleet: dict, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    """A file with the right schema and no rows plans no chunk; the job still finalizes."""
    local = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table({"prompt_id": pa.array([], pa.string()), "prompt": pa.array([], pa.string())}),
        local,
    )
    services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"]).upload_file(
        str(local), bucket, "in/empty.parquet"
    )
    proc = _submit(bucket, "e2e-empty", fleet_env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    body = client.get_object(Bucket=bucket, Key="out/job_id=e2e-empty/manifest.json")["Body"]
    manifest = json.loads(body.read())
    assert (manifest["rows_in"], manifest["rows_out"], manifest["complete"]) == (0, 0, True)
