"""Batch mode in the job's numbers: the manifest (``totals.batch_saved_usd``, ``by_mode``),
the cost rollup grouped by ``mode``, and ``batch-router report`` (text, ``--json``, HTML)
over synthetic result parts — including parts and rollups written before batch mode
(no ``mode`` / ``batch_saved_usd`` columns), which read as nulls."""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from producer.report import data as report_data
from producer.report import query as report_query
from producer.report.html import render_html
from producer.report.manifest import render, render_report
from routing.policy import load_policy
from routing.schema import COST_ROLLUP_SCHEMA, COST_SUMMARY_SCHEMA, RESULT_SCHEMA
from tests.cli import CliRunner
from tests.workers.pipeline import make_settings, plan_job, runtime, write_input
from workers import layout, rollup
from workers.finalize import finalize, read_results
from workers.storage import Storage

BY_MODE = re.compile(r"^by mode\s*$", re.MULTILINE)  # the title of the report's table
NEW_COLUMNS = ("mode", "batch_id", "round", "batch_saved_usd")
MODELS = {"fast": "gpt-4o-mini", "balanced": "gpt-4.1-mini", "expert": "gpt-4.1"}


def _money(rng: random.Random) -> Decimal:
    """A cost using all 12 places (a float sum of these drifts, an exact one does not)."""
    return Decimal(rng.randrange(1, 10**9)).scaleb(-12) + Decimal(rng.randrange(0, 3))


def result_rows(job_id: str, start: int, kinds: list[str], seed: int) -> list[dict[str, Any]]:
    """One result row per kind: ``batch`` (round 1 or 2), ``realtime``, ``duplicate`` (of
    a batch row: batch mode, no saving), ``rejected`` (no call: mode null)."""
    rng = random.Random(seed)
    rows = []
    for i, kind in enumerate(kinds, start):
        tier = None if kind == "rejected" else rng.choice(list(MODELS))
        called = kind in ("batch", "realtime")
        row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA.names)
        row.update(
            job_id=job_id,
            prompt_id=f"p{i}",
            tenant="acme",
            status="rejected" if kind == "rejected" else "ok",
            tier=tier,
            model=MODELS[tier] if tier else None,
            input_tokens=rng.randrange(1, 900) if tier else None,
            output_tokens=rng.randrange(1, 400) if tier else None,
            cost_usd=_money(rng) if called else Decimal(0),
            baseline_cost_usd=_money(rng) if tier else None,
            latency_ms=rng.uniform(50, 5000) if called else 0.0 if tier else None,
            attempts=1 if called else 0,
            dedupe_of="p0" if kind == "duplicate" else None,
            cache_hit=False if tier else None,
            mode=None if kind == "rejected" else "realtime" if kind == "realtime" else "batch",
            batch_id=f"batch_{i % 3}" if kind == "batch" else None,
            round=None if kind == "rejected" else (2 if kind == "batch" and i % 4 == 0 else 1),
            batch_saved_usd=_money(rng) if kind == "batch" else Decimal(0) if tier else None,
            input_file="in.parquet",
            input_row=i,
        )
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]], old: bool = False) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
    return table.drop_columns(list(NEW_COLUMNS)) if old else table


def _sum(rows: list[dict[str, Any]], column: str, **where: Any) -> Decimal:
    picked = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return sum((r[column] or Decimal(0) for r in picked), Decimal(0))


@dataclass(frozen=True)
class Job:
    root: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]  # every result row, the old part's with mode etc. unset


def finalized_job(tmp: Path, job_id: str, seed: int, batch: bool = True) -> Job:
    """A planned job of 14 rows (under ``tmp/out``) whose result parts are synthetic — a
    part of batch rows, realtime rows and duplicates of batch rows (all realtime when not
    ``batch``), a rejected part, and (``batch``) a part written before batch mode — then
    finalized by the real finalizer."""
    rt = runtime(make_settings())
    prompts = pa.table({"prompt_id": [f"p{i}" for i in range(14)], "prompt": ["hi"] * 14})
    source = write_input(tmp / f"{job_id}.parquet", prompts)
    plan = plan_job(rt, source, tmp / "out", job_id=job_id)
    root = plan.context.job_root
    kinds = ["batch"] * 5 + ["realtime"] * 2 + ["duplicate"] * 2 if batch else ["realtime"] * 9
    new = result_rows(job_id, 0, kinds, seed)
    rejected = result_rows(job_id, 9, ["rejected"] * 2, seed + 1)
    old = result_rows(job_id, 11, ["realtime"] * 3, seed + 2)
    for name, rows, legacy in (
        ("fast", new, False),
        ("rejected", rejected, False),
        ("expert", old, batch),
    ):
        rt.storage.write_parquet(layout.result_part(root, 0, name), _table(rows, legacy))
    manifest = finalize(rt, plan.context)
    for r in old if batch else []:
        r.update(dict.fromkeys(NEW_COLUMNS))
    return Job(Path(root), manifest, new + rejected + old)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    return finalized_job(tmp_path_factory.mktemp("batchjob"), "job-batch", seed=5)


# ---------------------------------------------------------------- the manifest


def test_read_results_fills_the_columns_an_old_part_lacks(tmp_path: Path) -> None:
    storage = Storage(make_settings().s3)
    new = result_rows("j", 0, ["batch", "realtime", "rejected"], seed=1)
    old = result_rows("j", 3, ["realtime"] * 2, seed=2)
    paths = [str(tmp_path / "new.parquet"), str(tmp_path / "old.parquet")]
    pq.write_table(_table(new), paths[0])
    pq.write_table(_table(old, old=True).drop_columns(["attempts"]), paths[1])
    table = read_results(storage, paths)
    assert table.num_rows == 5
    assert table.schema.field("batch_saved_usd").type == RESULT_SCHEMA.field("cost_usd").type
    assert table.column("mode").to_pylist() == ["batch", "realtime", None, None, None]
    assert table.column("attempts").to_pylist()[3:] == [None, None]
    saved = table.column("batch_saved_usd").to_pylist()
    assert saved[:2] == [new[0]["batch_saved_usd"], Decimal(0)] and saved[3:] == [None, None]
    empty = read_results(storage, [])
    assert empty.num_rows == 0 and "mode" in empty.column_names


def test_manifest_totals_and_by_mode_are_exact(job: Job) -> None:
    totals, by_mode = job.manifest["totals"], job.manifest["by_mode"]
    assert job.manifest["state"] == "succeeded" and job.manifest["rows_out"] == 14
    assert Decimal(totals["batch_saved_usd"]) == _sum(job.rows, "batch_saved_usd") > 0
    assert set(by_mode) == {"batch", "realtime", "(no call)"}
    expected = {  # the old part's rows have no mode: no call recorded
        "batch": [r for r in job.rows if r["mode"] == "batch"],
        "realtime": [r for r in job.rows if r["mode"] == "realtime"],
        "(no call)": [r for r in job.rows if r["mode"] is None],
    }
    assert [len(v) for v in expected.values()] == [7, 2, 5]
    for mode, rows in expected.items():
        entry = by_mode[mode]
        assert entry["rows"] == len(rows), mode
        for column in ("cost_usd", "baseline_cost_usd", "batch_saved_usd"):
            assert Decimal(entry[column]) == _sum(rows, column), (mode, column)
    assert Decimal(by_mode["realtime"]["batch_saved_usd"]) == 0
    cost = sum((Decimal(e["cost_usd"]) for e in by_mode.values()), Decimal(0))
    assert cost == Decimal(totals["cost_usd"]) == _sum(job.rows, "cost_usd")
    assert set(by_mode["batch"]) == {"rows", "cost_usd", "baseline_cost_usd", "batch_saved_usd"}
    summary = pq.read_table(job.root / "cost" / "summary.parquet")
    assert summary.schema == COST_SUMMARY_SCHEMA
    assert sum(summary.column("rows").to_pylist()) == 14


def test_the_job_report_shows_the_split_by_mode(job: Job) -> None:
    text = _plain(render(job.manifest))
    assert "cost by mode" in text and "(no call)" in text
    assert "saved by provider batches vs realtime prices (7 rows answered in batch mode)" in text
    realtime = dict(job.manifest, by_mode={"realtime": job.manifest["by_mode"]["realtime"]})
    assert "cost by mode" not in _plain(render(realtime))
    before = {k: v for k, v in job.manifest.items() if k != "by_mode"}  # an old manifest
    assert "cost by tier" in _plain(render(before))


# ---------------------------------------------------------------- the rollup


def test_rollup_groups_by_mode_and_sums_batch_savings_exactly(job: Job) -> None:
    files = sorted((job.root / "cost").glob("day=*/tenant=*/part-0.parquet"))
    (path,) = files
    out = pq.read_table(path)
    assert out.schema == COST_ROLLUP_SCHEMA
    keys = ["tier", "model", "status", "mode"]
    groups = list(zip(*(out.column(k).to_pylist() for k in keys), strict=True))
    assert len(groups) == len(set(groups))
    assert {g[3] for g in groups} == {"batch", "realtime", None}
    assert None not in out.column("batch_saved_usd").to_pylist()  # 0 when none, never null
    by_mode: dict[str | None, Decimal] = {}
    modes, savings = out.column("mode").to_pylist(), out.column("batch_saved_usd").to_pylist()
    for mode, saved in zip(modes, savings, strict=True):
        by_mode[mode] = by_mode.get(mode, Decimal(0)) + saved
    assert by_mode["batch"] == _sum(job.rows, "batch_saved_usd", mode="batch")
    assert by_mode["realtime"] == by_mode[None] == 0


def test_rollup_of_rows_without_the_mode_columns() -> None:
    rows = result_rows("j", 0, ["realtime"] * 4 + ["rejected"], seed=3)
    table = _table(rows, old=True).select([c for c in rollup.INPUTS if c not in NEW_COLUMNS])
    out = rollup.build(table, load_policy())
    assert set(out.column("mode").to_pylist()) == {None}
    assert set(out.column("batch_saved_usd").to_pylist()) == {Decimal(0)}
    assert sum(out.column("rows").to_pylist()) == 5


# ---------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory, job: Job) -> Path:
    """The batch job, a realtime job, and a copy of the realtime job whose rollup is as
    written before batch mode (no ``mode`` / ``batch_saved_usd`` columns), side by side."""
    out = job.root.parent
    other = finalized_job(out.parent, "job-rt", seed=9, batch=False)
    legacy = out / "job_id=job-legacy"
    legacy.mkdir()
    (legacy / "_SUCCESS").write_bytes(b"")
    for part in other.root.glob("cost/day=*/tenant=*/part-0.parquet"):
        target = legacy / part.relative_to(other.root)
        target.parent.mkdir(parents=True)
        pq.write_table(pq.read_table(part).drop_columns(["mode", "batch_saved_usd"]), target)
    return out


def _report(out: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    jobs, frame = report_query.load(Storage(make_settings().s3), [str(out)], report_query.Filters())
    return frame, report_data.build(frame, len(jobs.job_roots), {"tenant": None})


def test_report_by_mode_and_batch_saved(month: Path, job: Job) -> None:
    frame, report = _report(month)
    assert report["jobs"] == 3
    by_mode = report["by_mode"]
    assert set(by_mode) == {"batch", "realtime", "(no call)", "(not recorded)"}
    assert by_mode["(not recorded)"]["rows"] == 14  # the whole legacy job
    assert by_mode["batch"]["rows"] == 7
    assert by_mode["batch"]["batch_saved_usd"] == report_data.money(
        _sum(job.rows, "batch_saved_usd")
    )
    assert report["totals"]["batch_saved_usd"] == by_mode["batch"]["batch_saved_usd"]
    assert by_mode["(not recorded)"]["batch_saved_usd"] == report_data.money(Decimal(0))
    rows = sum(e["rows"] for e in by_mode.values())
    cost = sum((Decimal(e["cost_usd"]) for e in by_mode.values()), Decimal(0))
    assert (rows, cost) == (report["totals"]["rows"], Decimal(report["totals"]["cost_usd"]))
    for line in report["by_tier"].values():
        assert "batch_saved_usd" in line

    text = _plain(render_report(report))
    assert BY_MODE.search(text) and "(not recorded)" in text
    assert "saved by provider batches" in text
    page = render_html(frame, report)
    assert "<h3>by mode</h3>" in page and "batch saved USD" in page
    assert ">batch saved</div>" in page


def test_report_without_batch_rows_keeps_its_shape(month: Path) -> None:
    frame, report = _report(month / "job_id=job-rt")
    assert set(report["by_mode"]) == {"realtime", "(no call)"}
    assert report["totals"]["batch_saved_usd"] == report_data.money(Decimal(0))
    text = _plain(render_report(report))
    assert not BY_MODE.search(text) and "saved by provider batches" not in text
    page = render_html(frame, report)
    assert "<h3>by mode</h3>" not in page and ">batch saved</div>" in page


def test_report_command_json_and_text(month: Path, job: Job, cli: CliRunner) -> None:
    proc = cli("report", str(month), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["by_mode"]["batch"]["rows"] == 7
    saved = _sum(job.rows, "batch_saved_usd")
    assert Decimal(report["totals"]["batch_saved_usd"]) == saved
    text = cli("report", str(month), "--tenant", "acme")
    assert text.returncode == 0, text.stdout + text.stderr
    assert BY_MODE.search(text.stdout) and "saved by provider batches" in text.stdout


def _plain(renderable: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(renderable)
    return buffer.getvalue()
