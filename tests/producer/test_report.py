"""``batch-router report`` on a finished job, and the report rendering itself."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from producer.report import render
from tests.producer.conftest import SampleJob, assert_clean_error, clean_env, run_cli

pytestmark = pytest.mark.e2e


def _report(job: SampleJob, *args: str) -> Any:
    return run_cli("report", *args, cwd=job.cwd, env=clean_env())


@pytest.mark.parametrize("where", ["job-folder", "output-root", "output-root-slash"])
def test_report_reprints_the_run_report(sample_job: SampleJob, where: str) -> None:
    path = {
        "job-folder": str(sample_job.job_root.relative_to(sample_job.cwd)),
        "output-root": "out",
        "output-root-slash": str(sample_job.out) + "/",
    }[where]
    proc = _report(sample_job, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == sample_job.proc.stdout  # the same report `run` printed
    assert proc.stderr == ""


def test_report_json_is_the_manifest(sample_job: SampleJob) -> None:
    # a narrow terminal and a long absolute path: the JSON is still not wrapped
    env = clean_env(COLUMNS="40")
    proc = run_cli("report", str(sample_job.job_root), "--json", cwd=sample_job.cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(
        (sample_job.job_root / "manifest.json").read_text()
    )


def test_report_of_a_root_holding_two_jobs_asks_for_one(
    sample_job: SampleJob, tmp_path: Path
) -> None:
    shutil.copytree(sample_job.job_root, tmp_path / "out" / "job_id=a")
    shutil.copytree(sample_job.job_root, tmp_path / "out" / "job_id=b")
    proc = run_cli("report", "out", cwd=tmp_path, env=clean_env())
    assert_clean_error(proc, "2 jobs", "job_id=a", "job_id=b", "give one job folder")
    proc = run_cli("report", "out/job_id=b", cwd=tmp_path, env=clean_env())
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", ["nowhere", "out/job_id=missing", "."])
def test_report_of_no_finished_job(tmp_path: Path, path: str) -> None:
    (tmp_path / "out" / "job_id=running" / "results").mkdir(parents=True)  # no manifest yet
    proc = run_cli("report", path, cwd=tmp_path, env=clean_env())
    assert_clean_error(proc, path)
    assert "finished" in proc.stderr


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
