"""``batch-router report`` over real finished jobs (``batch-router run`` into one output
root, several tenants), its filters and errors, and the one-job manifest rendering that
``run`` and ``submit --wait`` print."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rich.console import Console

from producer.report.manifest import render
from tests.cli import SampleJob, assert_clean_error, clean_env, run_cli

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Month:
    """Three real jobs in one output root: acme twice, globex once; plus an older copy of
    the first, its rollup moved to 2026-11-01 (as a job of that night would be)."""

    cwd: Path
    jobs: dict[str, str]  # name → job_id

    @property
    def out(self) -> Path:
        return self.cwd / "out"

    def root(self, name: str) -> Path:
        return self.out / f"job_id={self.jobs[name]}"

    def results(self, *names: str) -> pl.DataFrame:
        roots = [self.root(n) for n in names]
        return pl.concat(
            [pl.read_parquet(p) for r in roots for p in sorted((r / "results").glob("*.parquet"))],
            how="diagonal_relaxed",
        )

    def manifest(self, name: str) -> dict[str, Any]:
        return dict(json.loads((self.root(name) / "manifest.json").read_text()))


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    cwd = tmp_path_factory.mktemp("month")
    jobs = {}
    for name, tenant, n in (("a", "acme", 240), ("b", "globex", 160), ("c", "acme", 120)):
        proc = run_cli(
            "run", "--sample", str(n), "--output", "out", "--tenant", tenant,
            "--job-id", f"job-{name}", cwd=cwd,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        jobs[name] = f"job-{name}"
    month = Month(cwd, jobs)
    old = month.out / "job_id=job-old"
    shutil.copytree(month.root("a"), old)
    (day,) = (old / "cost").glob("day=*")
    day.rename(old / "cost" / "day=2026-11-01")
    return Month(cwd, {**jobs, "old": "job-old"})


def _report(month: Month, *args: str) -> Any:
    return run_cli("report", *args, cwd=month.cwd, env=clean_env())


def _json(month: Month, *args: str) -> dict[str, Any]:
    proc = _report(month, *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def _money(df: pl.DataFrame, column: str) -> str:
    total = df[column].drop_nulls().to_list()
    return f"{sum(total, Decimal(0)).quantize(Decimal('1e-12')):f}"


def test_report_totals_equal_the_row_sums_exactly(month: Month) -> None:
    report = _json(month, "out")
    rows = month.results("a", "b", "c", "a")  # job-old is a copy of job-a
    totals = report["totals"]
    assert (report["jobs"], report["jobs_searched"]) == (4, 4)
    assert totals["rows"] == rows.height == 240 * 2 + 160 + 120
    assert totals["cost_usd"] == _money(rows, "cost_usd")
    assert totals["baseline_cost_usd"] == _money(rows, "baseline_cost_usd")
    saving = Decimal(totals["baseline_cost_usd"]) - Decimal(totals["cost_usd"])
    assert Decimal(totals["saving_usd"]) == saving > 0
    assert totals["saving_pct"] == round(
        float(saving / Decimal(totals["baseline_cost_usd"])) * 100, 3
    )
    manifests = [month.manifest(n) for n in ("a", "b", "c", "a")]
    for key in ("cache_saved_usd", "dedupe_saved_usd"):
        assert Decimal(totals[key]) == sum(Decimal(m["totals"][key]) for m in manifests)
    assert totals["duplicates"] == sum(m["totals"]["duplicates_answered"] for m in manifests)
    called = rows.filter(
        pl.col("dedupe_of").is_null()
        & ~pl.col("cache_hit").fill_null(False)
        & (pl.col("attempts").fill_null(0) > 0)
    )
    assert totals["latency_ms"]["count"] == called["latency_ms"].drop_nulls().len()
    for key, column in (("tenant", "tenant"), ("tier", "tier"), ("status", "status")):
        by = rows.group_by(column).agg(pl.len(), pl.col("cost_usd").sum())
        expected = {
            (k if k is not None else "(not routed)"): (n, f"{c.quantize(Decimal('1e-12')):f}")
            for k, n, c in by.iter_rows()
        }
        got = {k: (v["rows"], v["cost_usd"]) for k, v in report[f"by_{key}"].items()}
        assert got == expected, key
    assert list(report["by_day"]) == ["2026-11-01", month.manifest("a")["created_at"][:10]]
    assert set(report["by_job"]) == {"job-a", "job-b", "job-c", "job-old"}


def test_report_of_one_job_agrees_with_its_manifest(month: Month) -> None:
    report = _json(month, str(month.root("b")))
    manifest = month.manifest("b")
    assert report["jobs"] == 1 and report["totals"]["rows"] == manifest["rows_out"]
    for key in ("cost_usd", "baseline_cost_usd", "saving_usd", "cache_saved_usd"):
        assert Decimal(report["totals"][key]) == Decimal(manifest["totals"][key]), key
    assert {t: v["rows"] for t, v in report["by_tier"].items()} == {
        t: v["rows"] for t, v in manifest["by_tier"].items()
    }


def test_report_over_several_job_folders(month: Month) -> None:
    both = _json(month, "out/job_id=job-a", str(month.root("c")), "out/job_id=job-a/")
    rows = month.results("a", "c")  # job-a named twice counts once
    assert both["totals"]["rows"] == rows.height
    assert both["totals"]["cost_usd"] == _money(rows, "cost_usd")
    assert set(both["by_job"]) == {"job-a", "job-c"}


def test_report_filters_by_tenant_and_day(month: Month) -> None:
    acme = _json(month, "out", "--tenant", "acme")
    rows = month.results("a", "c", "a")
    assert list(acme["by_tenant"]) == ["acme"]
    assert acme["totals"]["cost_usd"] == _money(rows, "cost_usd")
    today = month.manifest("a")["created_at"][:10]
    recent = _json(month, "out", "--tenant", "acme", "--since", today)
    assert recent["totals"]["rows"] == 240 + 120 and set(recent["by_job"]) == {"job-a", "job-c"}
    november = _json(month, "out", "--since", "2026-11-01", "--until", "2026-11-30")
    assert list(november["by_job"]) == ["job-old"] and november["totals"]["rows"] == 240


def test_report_of_a_tenant_with_no_rows_is_empty(month: Month) -> None:
    report = _json(month, "out", "--tenant", "nobody")
    assert report["jobs"] == 0 and report["jobs_searched"] == 4
    assert report["totals"]["rows"] == 0 and report["totals"]["cost_usd"] == "0.000000000000"
    assert report["by_tier"] == {} and report["first_day"] is None
    proc = _report(month, "out", "--tenant", "nobody")
    assert proc.returncode == 0, proc.stderr
    assert "no rows match (4 jobs searched; tenant nobody)" in proc.stdout


def test_report_table(month: Month) -> None:
    proc = _report(month, "out")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "cost report — 4 jobs, 2026-11-01 … " in out and "by tier" in out
    for heading in ("by tenant", "by model", "by day", "saving", "reuse", "latency"):
        assert heading in out, heading
    rows = month.results("a", "b", "c", "a")
    assert f"rows     {rows.height:,} (ok " in out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--since", "2026-13-01"], ["--since", "'2026-13-01' is not a date"]),
        (["--until", "yesterday"], ["--until", "not a date"]),
        (["--since", "2026-11-30", "--until", "2026-11-01"], ["is after --until"]),
    ],
)
def test_report_rejects_bad_dates(month: Month, args: list[str], needles: list[str]) -> None:
    assert_clean_error(_report(month, "out", *args), *needles)


@pytest.mark.parametrize("path", ["nowhere", "out/job_id=missing", "out/job_id=running", "."])
def test_report_of_no_finished_job(tmp_path: Path, path: str) -> None:
    (tmp_path / "out" / "job_id=running" / "results").mkdir(parents=True)  # not finished yet
    proc = run_cli("report", path, cwd=tmp_path, env=clean_env())
    assert_clean_error(proc, path, "no finished job")


def test_report_skips_jobs_finished_before_rollups(month: Month, tmp_path: Path) -> None:
    shutil.copytree(month.root("b"), tmp_path / "out" / "job_id=new")
    shutil.copytree(month.root("c"), tmp_path / "out" / "job_id=legacy")
    for day in (tmp_path / "out" / "job_id=legacy" / "cost").glob("day=*"):
        shutil.rmtree(day)  # as a job finalized before rollups: only cost/summary.parquet
    proc = run_cli("report", "out", "--json", cwd=tmp_path, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stderr and "job_id=legacy" in proc.stderr
    assert json.loads(proc.stdout)["totals"]["rows"] == month.manifest("b")["rows_out"]
    shutil.rmtree(tmp_path / "out" / "job_id=new")
    proc = run_cli("report", "out", cwd=tmp_path, env=clean_env())
    assert_clean_error(proc, "no finished job with a cost rollup")


def test_report_of_a_corrupt_rollup_is_a_clean_error(month: Month, tmp_path: Path) -> None:
    shutil.copytree(month.root("b"), tmp_path / "out" / "job_id=b")
    (part,) = (tmp_path / "out" / "job_id=b" / "cost").glob("day=*/tenant=*/part-0.parquet")
    part.write_bytes(b"PAR1 not really")
    proc = run_cli("report", "out", cwd=tmp_path, env=clean_env())
    assert_clean_error(proc, "cannot read the cost rollups")


# ------------------------------------------------------ the one-job report `run` prints


def _text(manifest: dict[str, Any]) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(render(manifest))
    return console.export_text()


def test_render_matches_the_manifest(sample_job: SampleJob) -> None:
    manifest = json.loads((sample_job.job_root / "manifest.json").read_text())
    text = _text(manifest)
    rows = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    # tiers in policy order (cheapest first), then rows that never reached a tier
    assert rows == [*manifest["tiers"], "(not routed)", "total"]
    total = next(line for line in text.splitlines() if line.startswith("│ total"))
    assert f" {manifest['rows_out']} " in total


def test_render_of_an_empty_job() -> None:
    zero = {"rows": 0, "cost_usd": "0", "baseline_cost_usd": "0"}
    manifest = {
        "job_id": "j",
        "policy_version": "p-1",
        "rows_in": 0,
        "rows_out": 0,
        "rows_by_status": {"ok": 0, "failed": 0, "rejected": 0, "over_budget": 0},
        "duplicates": 0,
        "totals": {"cost_usd": "0", "baseline_cost_usd": "0", "saving_usd": "0", "saving_pct": 0.0},
        "by_tier": {"fast": zero},
    }
    text = _text(manifest)
    assert "0 in, 0 out; 0 duplicates" in text  # no empty "()" status list
    assert "$0.0000 (0.0% vs all-expert)" in text


def test_render_formats_large_amounts_with_cents() -> None:
    manifest = {
        "job_id": "big",
        "policy_version": "p-2",
        "rows_in": 10_000_000,
        "rows_out": 10_000_000,
        "rows_by_status": {"ok": 9_999_990, "failed": 0, "rejected": 10, "over_budget": 0},
        "duplicates": 12_345,
        "totals": {
            "cost_usd": "1234.5678",
            "baseline_cost_usd": "5000.004",
            "saving_usd": "3765.4362",
            "saving_pct": 75.3,
        },
        "by_tier": {
            "fast": {"rows": 10_000_000, "cost_usd": "1234.5678", "baseline_cost_usd": "5000.004"}
        },
    }
    text = _text(manifest)
    assert "10,000,000 in, 10,000,000 out (ok 9,999,990, rejected 10); 12,345 duplicates" in text
    assert "$1,234.57" in text and "$5,000.00" in text
    assert "$3,765.44 (75.3% vs all-expert)" in text
