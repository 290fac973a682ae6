"""An experiment on whole jobs (local executor, simulated provider; issue 16): arms route
with their thresholds and are recorded per row, in the labels and in the cost rollup; the
report shows per arm cost, judged quality with its interval and regret; the bandit sets a
job's arm shares from the judged labels when it is planned."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from producer.report import data as report_data
from producer.report import query
from producer.report.experiment import judged, section
from producer.report.manifest import render_report
from routing.policy import parse_policy
from tests import policies
from tests.workers.pipeline import (
    make_settings,
    plan_job,
    prompts,
    results,
    runtime,
    with_reference,
    write_input,
)
from workers import layout, local
from workers.audit import read_lines
from workers.explore import LABEL_SCHEMA
from workers.sim.server import SimServer

ARMS = [
    {"name": "control"},
    {"name": "frugal", "max_score": {"fast": 0.9, "balanced": 0.95}},
]


def run(tmp_path: Path, sim: SimServer, policy: Any, job_id: str, out: Path) -> pl.DataFrame:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / job_id / "in.parquet", with_reference(80))
    plan = plan_job(rt, uri, out, rows_per_chunk=40, job_id=job_id, policy=policy)
    local.run_job(rt, plan)
    return results(rt, plan)


def test_arms_route_differently_and_are_reported_with_judged_quality(
    tmp_path: Path, sim: SimServer
) -> None:
    policy = policies.build(experiment={"name": "thr-1", "arms": ARMS}, explore={"rate": 1.0})
    out = tmp_path / "out"
    rows = run(tmp_path, sim, policy, "exp-1", out)
    assert set(rows["arm"]) == {"thr-1:control", "thr-1:frugal"}
    for row in rows.iter_rows(named=True):  # the decision names its arm, in the audit too
        assert row["route_reason"].split("; ")[1] == f"arm {row['arm']}"
    storage = runtime(make_settings(sim)).storage
    audit = [
        json.loads(line)
        for uri in storage.list_files(str(out / "job_id=exp-1" / "_audit"), ".parquet")
        for line in read_lines(storage, uri)
        if line
    ]
    assert audit and all("; arm thr-1:" in record["rule"] for record in audit)
    fast_share = rows.group_by("arm").agg((pl.col("tier") == "fast").mean().alias("fast"))
    shares = dict(zip(fast_share["arm"], fast_share["fast"], strict=True))
    assert shares["thr-1:frugal"] > shares["thr-1:control"]  # higher thresholds: cheaper

    labels = pl.concat([pl.read_parquet(f) for f in out.glob("_labels/**/*.parquet")])
    assert set(labels["arm"]) == set(rows["arm"]) and labels["served"].sum() == labels.height // 2
    per_arm = judged(labels)
    for line in per_arm.values():
        lo, hi = line["quality_ci95"]
        assert lo <= line["quality"] <= hi and line["regret"] >= 0 and line["judged"] > 1

    jobs, frame = query.load(storage, [str(out)], query.Filters(None, None, None))
    assert set(frame["arm"].drop_nulls()) == set(rows["arm"])  # the rollup groups by arm
    by_arm = section(storage, frame, jobs.job_roots)
    for arm, line in by_arm.items():
        assert line["rows"] == rows.filter(pl.col("arm") == arm).height
        assert line["judged"] == per_arm[arm]["judged"] and line["quality"] is not None
    report = report_data.build(frame, len(jobs.job_roots), {})
    assert report["totals"]["rows"] == 80
    console = Console(file=io.StringIO(), width=200)
    console.print(render_report({**report, "by_arm": by_arm}))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "by experiment arm" in text and "thr-1:frugal" in text and "regret" in text


def judged_night(root: Path, winner: str, loser: str, n: int = 40) -> None:
    """Yesterday's judged labels: ``winner``'s served answers all good, ``loser``'s poor."""
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        arm = winner if i % 2 else loser
        for served in (True, False):
            rows.append({
                "dataset": "feedback", "prompt_id": f"fb-{i}", "prompt": f"p{i}",
                "model": "fast-model" if served else "balanced-model",
                "quality": (1.0 if arm == winner else 0.2) if served else 1.0,
                "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0, "response": "r",
                "tier": "fast", "judge": "reference", "tenant": "default", "customer_tier": None,
                "arm": f"thr-1:{arm}", "served": served, "job_id": "old", "source_prompt_id": "x",
                "labelled_at": now.isoformat(timespec="seconds"),
            })  # fmt: skip
    folder = root / "_labels" / f"day={now.date()}" / "tenant=default"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=LABEL_SCHEMA), folder / "old.parquet")


@pytest.mark.parametrize("winner", ["frugal", "control"])
def test_the_bandit_moves_traffic_to_the_judged_winner(
    tmp_path: Path, sim: SimServer, winner: str
) -> None:
    loser = "control" if winner == "frugal" else "frugal"
    out = tmp_path / "out"
    judged_night(out, winner, loser)
    bandit = {"enabled": True, "floor": 0.1}
    policy = policies.build(experiment={"name": "thr-1", "arms": ARMS, "bandit": bandit})
    rows = run(tmp_path, sim, policy, f"bandit-{winner}", out)
    copy = parse_policy((out / f"job_id=bandit-{winner}" / "_job" / "policy.yaml").read_text())
    assert copy.experiment is not None
    weights = dict(
        zip([a.name for a in copy.experiment.arms], copy.experiment.weights(), strict=True)
    )
    assert weights[winner] == pytest.approx(0.9, abs=0.01) and weights[loser] >= 0.1 - 1e-9
    share = (rows["arm"] == f"thr-1:{winner}").mean()
    assert share > 0.75  # most of the job's traffic went to the winner
    assert set(rows["policy_version"]) == {copy.version}
    assert layout.policy(str(out / f"job_id=bandit-{winner}")).endswith("policy.yaml")


def test_job_wide_duplicates_keep_their_arm(tmp_path: Path, sim: SimServer) -> None:
    """A prompt repeated in a later chunk is held and filled at finalize (workers/dedupe.py):
    it keeps its own arm (the same as its first occurrence's: the arm is the text's)."""
    policy = policies.build(experiment={"name": "thr-1", "arms": ARMS})
    first = prompts(40)
    again = first.set_column(0, "prompt_id", pa.array([f"again-{i}" for i in range(40)]))
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", pa.concat_tables([first, again]))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=40, job_id="dups", policy=policy)
    local.run_job(rt, plan)
    rows = results(rt, plan)
    assert rows.height == 80 and rows["arm"].null_count() == 0
    held = rows.filter(pl.col("dedupe_of").is_not_null())
    assert held.height > 0
    arm_of = dict(zip(rows["prompt_id"], rows["arm"], strict=True))
    for row in held.iter_rows(named=True):
        assert row["arm"] == arm_of[row["dedupe_of"]]
