"""Done-when of job-wide dedupe, on the real fleet (Redis, SeaweedFS, celery worker
processes, the simulated provider over HTTP): 30 % of a job's rows repeat prompts of other
chunks; each distinct prompt is sent once, every row comes out once with a status, the
manifest's totals are the sums of the rows, and a second run is answered from the cache."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from tests import services
from workers.audit import verify_job
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DISTINCT, DUPLICATES, ROWS_PER_CHUNK = 2100, 900, 250  # 3,000 rows, 30 % duplicates, 12 chunks
if os.environ.get("BR_DEDUPE_FULL_CORPUS"):  # the whole corpus (16,828 distinct prompts), by hand
    DISTINCT, DUPLICATES, ROWS_PER_CHUNK = 16_828, 7_212, 2_000  # 24,040 rows, 30 % duplicates


def _sim_stats(sim_url: str) -> dict:
    with urllib.request.urlopen(sim_url.removesuffix("/v1") + "/_sim/stats", timeout=5) as r:
        return dict(json.load(r))


def _calls(before: dict, after: dict) -> int:
    b, a = before["requests_by_model"], after["requests_by_model"]
    return sum(a.values()) - sum(b.values())


def _input(corpus: Path, tag: str) -> pl.DataFrame:
    """Real corpus prompts under a system prompt of this run's own, so the simulated
    provider (one per test session) has never seen these requests: its counters are ours."""
    base = pl.read_parquet(corpus, columns=["prompt_id", "prompt"])
    base = base.unique("prompt", keep="first", maintain_order=True).sample(DISTINCT, seed=5)
    base = base.with_columns(pl.lit(f"You are a careful assistant ({tag}).").alias("system"))
    dups = base.sample(DUPLICATES, seed=6, with_replacement=True).with_columns(
        (pl.col("prompt_id") + "-dup" + pl.int_range(pl.len()).cast(pl.String)).alias("prompt_id")
    )
    return pl.concat([base, dups]).sample(fraction=1.0, shuffle=True, seed=7)


def _run(bucket: str, job_id: str, tenant: str, env: dict[str, str], fleet: dict) -> None:
    proc = services.submit(bucket, job_id, env, "--tenant", tenant, timeout=600)
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "".join(p.log_tail() for p in fleet.values())
    )


def _results(storage: Storage, root: str) -> tuple[dict, pl.DataFrame]:
    manifest = json.loads(storage.read_bytes(f"{root}/manifest.json"))
    out = pl.from_arrow(storage.read_parquet(f"{root}/results"))
    assert isinstance(out, pl.DataFrame)
    return manifest, out


def test_job_wide_dedupe_on_the_fleet(
    corpus_path: Path,
    bucket: str,
    fleet: dict,
    fleet_env: dict[str, str],
    sim_url: str,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    table = _input(corpus_path, tag)
    local = tmp_path / "in.parquet"
    pq.write_table(table.to_arrow(), local, row_group_size=ROWS_PER_CHUNK)
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    client.upload_file(str(local), bucket, "in/part-0.parquet")
    env = {**fleet_env, "BATCH_ROUTER_ROWS_PER_CHUNK": str(ROWS_PER_CHUNK)}
    tenant = f"dedupe-{tag}"
    storage = Storage(
        S3Settings(
            endpoint_url=fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"],
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )

    before = _sim_stats(sim_url)
    _run(bucket, "dedupe-1", tenant, env, fleet)
    after = _sim_stats(sim_url)
    root = f"s3://{bucket}/out/job_id=dedupe-1"
    manifest, out = _results(storage, root)

    # each distinct prompt was sent exactly once (the provider's own counter)
    assert _calls(before, after) == DISTINCT
    assert after["duplicate_prompts"] == before["duplicate_prompts"]

    # every input row comes out once, with a status
    assert out.height == table.height == manifest["rows_in"] == manifest["rows_out"]
    assert sorted(out["prompt_id"].to_list()) == sorted(table["prompt_id"].to_list())
    assert out["status"].null_count() == 0 and set(out["status"]) == {"ok"}

    # the duplicates: answered from their canonical row, most of them in another chunk
    dups = out.filter(pl.col("dedupe_of").is_not_null())
    assert dups.height == DUPLICATES
    canon = out.filter(pl.col("dedupe_of").is_null()).select(
        pl.col("prompt_id").alias("dedupe_of"),
        pl.col("response").alias("c_response"),
        pl.col("baseline_cost_usd").alias("c_baseline"),
        (pl.col("input_row") // ROWS_PER_CHUNK).alias("c_chunk"),
    )
    joined = dups.join(canon, on="dedupe_of", how="left")
    assert joined["c_response"].null_count() == 0
    assert (joined["response"] == joined["c_response"]).all()
    assert (joined["baseline_cost_usd"] == joined["c_baseline"]).all()
    assert (dups["cost_usd"] == 0).all()
    other_chunk = (joined["input_row"] // ROWS_PER_CHUNK != joined["c_chunk"]).sum()
    assert other_chunk > DUPLICATES // 2
    assert any(p.endswith("-dedupe.parquet") for p in manifest["parts"])

    # the manifest's totals are the sums of the rows, exactly
    totals = manifest["totals"]
    assert Decimal(totals["cost_usd"]) == sum(out["cost_usd"].to_list(), Decimal(0))
    assert Decimal(totals["baseline_cost_usd"]) == sum(
        out["baseline_cost_usd"].to_list(), Decimal(0)
    )
    by_status = out.group_by("status").len()
    assert {s: n for s, n in manifest["rows_by_status"].items() if n} == dict(by_status.iter_rows())
    assert totals["duplicates_answered"] == DUPLICATES
    assert verify_job(storage, root).ok

    # a second run of the same input (new job id) is answered from the cache
    _run(bucket, "dedupe-2", tenant, env, fleet)
    again = _sim_stats(sim_url)
    manifest2, out2 = _results(storage, f"s3://{bucket}/out/job_id=dedupe-2")
    assert out2.height == table.height == manifest2["rows_out"]
    hit_share = out2["cache_hit"].fill_null(False).sum() / out2.height
    assert hit_share >= 0.95, hit_share
    assert _calls(after, again) <= 0.05 * DISTINCT
    print(
        json.dumps(
            {
                "rows": out.height,
                "distinct": DISTINCT,
                "provider_calls_run1": _calls(before, after),
                "provider_calls_run2": _calls(after, again),
                "cache_hit_share_run2": round(float(hit_share), 4),
            }
        )
    )
