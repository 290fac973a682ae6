"""``batch-router run`` end to end with the local executor: sample prompts, a slice of the
real corpus, ``--json``, and an S3 output root on a real object store."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.schema import RESULT_COLUMNS
from tests import services
from tests.cli import CliRunner, SampleJob
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = pytest.mark.e2e

TIERS = ("fast", "balanced", "expert")


def _results(root: Path) -> pa.Table:
    parts = sorted((root / "results").glob("part-*.parquet"))
    assert parts, f"no result parts under {root}"
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")


def test_run_sample_prints_the_cost_report(sample_job: SampleJob) -> None:
    out = sample_job.proc.stdout
    manifest = json.loads((sample_job.job_root / "manifest.json").read_text())
    assert f"job {manifest['job_id']}" in out
    assert "cost by tier" in out
    for tier in manifest["by_tier"]:
        assert re.search(rf"│ {re.escape(tier)}\s+│\s+{manifest['by_tier'][tier]['rows']} ", out)
    assert re.search(r"│ total\s+│\s+300 ", out), out
    assert "300 in, 300 out (ok 298, rejected 2)" in out
    saving = Decimal(manifest["totals"]["saving_usd"])
    assert f"saving  ${saving:,.4f} ({manifest['totals']['saving_pct']:.1f}% vs all-expert)" in out
    assert f"policy  {manifest['policy_version']}" in out
    # the progress bar goes to stderr, so stdout is the report alone
    assert "300/300" not in out
    assert "300/300" in sample_job.proc.stderr
    # and says where the results are
    assert f"results: out/{sample_job.job_root.name}" in sample_job.proc.stderr


def test_run_sample_writes_a_complete_job(sample_job: SampleJob) -> None:
    root = sample_job.job_root
    job_id = root.name.removeprefix("job_id=")
    for name in ("manifest.json", "_SUCCESS", "cost/summary.parquet", "_job/plan.json"):
        assert (root / name).is_file(), name
    assert len(list((sample_job.out / "_sample").glob("prompts-*.parquet"))) == 1

    table = _results(root)
    assert table.num_rows == 300
    assert set(RESULT_COLUMNS) <= set(table.column_names)
    assert "source" in table.column_names  # the sample's extra column is carried through
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    assert df["prompt_id"].n_unique() == 300
    assert set(df["job_id"].unique()) == {job_id}
    rejected = df.filter(pl.col("status") == "rejected").sort("prompt_id")
    assert rejected["prompt_id"].to_list() == ["sample-000000", "sample-000001"]
    assert rejected["error"].null_count() == 0  # every rejection says why
    ok = df.filter(pl.col("status") == "ok")
    assert ok.height == 298
    assert set(ok["tier"].unique()) == set(TIERS)
    assert ok["response"].null_count() == 0

    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["job_id"] == job_id
    assert (manifest["rows_in"], manifest["rows_out"], manifest["complete"]) == (300, 300, True)
    assert manifest["rows_by_status"]["rejected"] == 2
    assert manifest["rows_by_status"]["ok"] == 298
    assert sorted(manifest["parts"]) == sorted(p.name for p in (root / "results").iterdir())
    assert Decimal(manifest["totals"]["cost_usd"]) == sum(
        (c for c in table.column("cost_usd").to_pylist() if c is not None), Decimal(0)
    )
    summary = pq.read_table(root / "cost" / "summary.parquet")
    assert sum(summary.column("rows").to_pylist()) == 300
    assert set(df["policy_version"].unique()) == {manifest["policy_version"]}


@pytest.fixture
def corpus_input(corpus_path: Path, tmp_path: Path) -> pl.DataFrame:
    """2,000 real prompts of every kind, with extra columns, as a folder of two files of
    several row groups (plus files a drop folder holds that are not input)."""
    df = (
        pl.read_parquet(corpus_path)
        .unique("prompt_id", keep="first", maintain_order=True)
        .sample(n=2000, seed=5, shuffle=True)
        .with_columns(
            pl.int_range(pl.len()).alias("batch_row"),
            pl.lit("nightly-42").alias("batch_name"),
            pl.col("kind").cast(pl.Categorical).alias("kind_cat"),
        )
    )
    folder = tmp_path / "in"
    folder.mkdir()
    for i, piece in enumerate((df.slice(0, 1200), df.slice(1200))):
        pq.write_table(piece.to_arrow(), folder / f"part-{i}.parquet", row_group_size=400)
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "README.txt").write_text("not input")
    return df


def test_each_sample_run_keeps_its_own_input(cli: CliRunner, tmp_path: Path) -> None:
    """Two ``run --sample`` into one output: the first job's planned input is not rewritten."""
    plans = []
    for n, job in ((20, "sample-a"), (30, "sample-b")):
        proc = cli("run", "--sample", str(n), "--output", "out", "--json", "--job-id", job)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        plan = json.loads((tmp_path / f"out/job_id={job}/_job/plan.json").read_text())
        plans.append(plan)
    (first,), (second,) = (p["files"] for p in plans)
    assert first["uri"] != second["uri"]
    assert "/_sample/" in first["uri"] and "/_sample/" in second["uri"]
    assert pq.ParquetFile(tmp_path / first["uri"]).metadata.num_rows == first["rows"] == 20
    assert pq.ParquetFile(tmp_path / second["uri"]).metadata.num_rows == second["rows"] == 30


def test_run_corpus_subset_json(corpus_input: pl.DataFrame, cli: CliRunner, tmp_path: Path) -> None:
    proc = cli(
        "run", "in", "--output", "out", "--json", "--job-id", "corpus-2k", "--tenant", "acme",
        "--threads", "3", BATCH_ROUTER_ROWS_PER_CHUNK="500",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)  # stdout is the manifest alone, valid JSON
    assert manifest == json.loads((tmp_path / "out/job_id=corpus-2k/manifest.json").read_text())
    assert manifest["job_id"] == "corpus-2k"
    assert (manifest["rows_in"], manifest["rows_out"], manifest["complete"]) == (2000, 2000, True)
    used = {tier for tier, entry in manifest["by_tier"].items() if entry["rows"] > 0}
    assert len(used) >= 2, manifest["by_tier"]
    assert set(manifest["by_tenant"]) == {"acme"}
    assert Decimal(manifest["totals"]["cost_usd"]) < Decimal(
        manifest["totals"]["baseline_cost_usd"]
    )

    plan = json.loads((tmp_path / "out/job_id=corpus-2k/_job/plan.json").read_text())
    assert [f["uri"].rsplit("/", 1)[-1] for f in plan["files"]] == [
        "part-0.parquet",
        "part-1.parquet",
    ]
    assert len(plan["chunks"]) >= 4  # 500-row chunks over 1,200 + 800 rows

    out = pl.from_arrow(_results(tmp_path / "out/job_id=corpus-2k"))
    assert isinstance(out, pl.DataFrame)
    assert out.height == 2000
    assert sorted(out["prompt_id"]) == sorted(corpus_input["prompt_id"])
    assert set(out["tenant"].unique()) == {"acme"}
    assert out["tier"].n_unique() >= 2
    # unknown columns are carried through untouched; `input_tokens` (an output name) as src_*
    joined = corpus_input.join(out, on="prompt_id", suffix="_out")
    assert joined.height == 2000
    assert (joined["batch_row"] == joined["batch_row_out"]).all()
    assert (joined["batch_name_out"] == "nightly-42").all()
    assert (joined["kind"] == joined["kind_out"]).all()
    assert (joined["input_tokens"] == joined["src_input_tokens"]).all()
    assert (joined["kind_cat"].cast(pl.String) == joined["kind_cat_out"].cast(pl.String)).all()


@pytest.mark.integration
def test_run_sample_to_s3(s3_endpoint: str, bucket: str, cli: CliRunner, tmp_path: Path) -> None:
    s3_env = {
        "BATCH_ROUTER_S3__ENDPOINT_URL": s3_endpoint,
        "BATCH_ROUTER_S3__ACCESS_KEY_ID": services.S3_KEY,
        "BATCH_ROUTER_S3__SECRET_ACCESS_KEY": services.S3_SECRET,
    }
    root = f"s3://{bucket}/x"
    proc = cli("run", "--sample", "50", "--output", root, "--job-id", "s3job", "--json", **s3_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["complete"]) == (50, 50, True)
    assert manifest["rows_by_status"]["rejected"] == 2
    assert f"results: {root}/job_id=s3job" in proc.stderr
    assert not any(tmp_path.iterdir()), "an s3:// output wrote local files"

    listing = services.s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="x/")
    keys = {obj["Key"] for obj in listing.get("Contents", [])}
    job = "x/job_id=s3job/"
    for key in ("manifest.json", "_SUCCESS", "cost/summary.parquet", "_job/plan.json"):
        assert job + key in keys, sorted(keys)
    assert (
        len(
            [k for k in keys if re.fullmatch(r"x/_sample/prompts-[0-9TZ]+-[0-9a-f]{8}\.parquet", k)]
        )
        == 1
    )
    parts = sorted(
        k for k in keys if k.startswith(job + "results/part-") and k.endswith(".parquet")
    )
    assert parts
    assert not [k for k in keys if "_staging" in k or "/." in k], sorted(keys)

    storage = Storage(S3Settings(endpoint_url=s3_endpoint, access_key_id=services.S3_KEY,
                                 secret_access_key=services.S3_SECRET))  # fmt: skip
    table = pa.concat_tables([storage.read_parquet(f"s3://{bucket}/{p}") for p in parts])
    assert table.num_rows == 50
    assert sorted(table.column("prompt_id").to_pylist()) == [f"sample-{i:06d}" for i in range(50)]

    report = cli("report", root, "--json", **s3_env)
    assert report.returncode == 0, report.stdout + report.stderr
    totals = json.loads(report.stdout)["totals"]
    assert totals["rows"] == manifest["rows_out"]
    assert Decimal(totals["cost_usd"]) == Decimal(manifest["totals"]["cost_usd"])
    assert Decimal(totals["baseline_cost_usd"]) == Decimal(manifest["totals"]["baseline_cost_usd"])
