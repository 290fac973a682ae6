"""Exploration (policy ``explore:``, issue 16): a deterministic sample of a job's prompts is
answered by the partner tier too, both answers graded (the ``reference`` column here; the
judge model in tests/workers/test_sim_replay.py), both paid and attributed, and the labels
land under the output root for ``batch-router feedback`` — in realtime and in batch mode."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from rich.console import Console

from producer.commands.feedback import run_feedback
from routing.cost import call_cost
from routing.errors import InputError
from routing.explore import partner, sampled
from routing.learned.labels import load_feedback, parse_spec
from routing.policy import Policy
from tests import policies
from tests.workers.pipeline import (
    FAST_BATCH,
    make_settings,
    plan_job,
    results,
    runtime,
    with_reference,
    write_input,
)
from workers import local
from workers.sim.server import SimServer

RATE = 0.3


def explore_policy(mode: str = "realtime", **explore: Any) -> Policy:
    tiers = policies.every_tier(mode="batch", batch=FAST_BATCH) if mode == "batch" else None
    return policies.build(tiers=tiers, explore={"rate": RATE, **explore})


def run(
    tmp_path: Path,
    sim: SimServer,
    policy: Policy,
    table: pa.Table,
    job_id: str,
    out: Path | None = None,
) -> tuple[pl.DataFrame, Path]:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / job_id / "in.parquet", table)
    out = out or tmp_path / job_id / "out"
    plan = plan_job(rt, uri, out, rows_per_chunk=40, job_id=job_id, policy=policy)
    local.run_job(rt, plan)
    return results(rt, plan), out


def labels_of(out: Path) -> pl.DataFrame:
    files = sorted(out.glob("_labels/day=*/tenant=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def test_sampling_is_deterministic_per_job_and_near_the_rate() -> None:
    picks = [sampled("job-a", f"prompt {i}", 0.1) for i in range(20_000)]
    assert 0.09 < sum(picks) / len(picks) < 0.11
    assert picks == [sampled("job-a", f"prompt {i}", 0.1) for i in range(20_000)]
    other = [sampled("job-b", f"prompt {i}", 0.1) for i in range(20_000)]
    assert other != picks  # another night, another sample
    assert not any(sampled("job-a", f"prompt {i}", 0.0) for i in range(100))
    names = ("fast", "balanced", "expert")
    assert partner("fast", names, names) == "balanced"
    assert partner("expert", names, names) == "balanced"  # none above: the one below
    assert partner("balanced", names, names, "down") == "fast"
    assert partner("fast", names, ["fast", "expert"]) == "expert"  # allowed tiers only
    assert partner("fast", names, ["fast"]) is None


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_explored_rows_are_answered_twice_graded_paid_and_labelled(
    tmp_path: Path, sim: SimServer, mode: str
) -> None:
    policy = explore_policy(mode)
    table = with_reference(60)
    job_id = f"explore-{mode}"
    out, root = run(tmp_path, sim, policy, table, job_id)
    assert set(out["status"]) == {"ok"} and out.height == 60
    texts = dict(zip(table["prompt_id"].to_pylist(), table["prompt"].to_pylist(), strict=True))
    refs = dict(zip(table["prompt_id"].to_pylist(), table["reference"].to_pylist(), strict=True))
    # sampled, and gradable: rows without a reference are not explored (nothing to grade by)
    expected = {p for p, t in texts.items() if sampled(job_id, t, RATE) and refs[p] is not None}
    explored = out.filter(pl.col("explored").is_not_null())
    assert set(explored["prompt_id"]) == expected and 5 < len(expected) < 35
    names = policy.tier_names
    for row in explored.iter_rows(named=True):
        assert row["explored"] == partner(row["tier"], names, names)
        assert "explored:" in row["route_reason"]
        assert row["attempts"] >= 2  # both calls counted
        own = call_cost(
            policy.tier(row["tier"]).primary, row["input_tokens"], row["output_tokens"],
            batch=mode == "batch",
        )  # fmt: skip
        assert row["cost_usd"] > own  # the partner's answer is paid and attributed
    plain = out.filter(pl.col("explored").is_null())
    assert all("explored:" not in r for r in plain["route_reason"])

    labels = labels_of(root)
    graded = explored.filter(pl.col("reference").is_not_null())
    assert labels.height == 2 * graded.height > 0
    assert set(labels["source_prompt_id"]) == set(graded["prompt_id"])
    assert set(labels["quality"].to_list()) <= {0.0, 1.0}
    assert set(labels["judge"]) == {"reference"} and set(labels["tenant"]) == {"default"}
    assert labels.group_by("prompt_id").len()["len"].to_list() == [2] * graded.height
    for row in labels.iter_rows(named=True):
        assert row["model"] == policy.tier(row["tier"]).primary.name
        assert row["response"] and row["prompt"] == texts[row["source_prompt_id"]]
    assert explored["reference"].null_count() == 0
    # The ledger saw every call: Σ cost_usd is the job's spend, exploration included.
    assert sum(out["cost_usd"].to_list(), Decimal(0)) > 0


def test_feedback_collects_the_labels_for_training(tmp_path: Path, sim: SimServer) -> None:
    policy = explore_policy()
    _, root = run(tmp_path, sim, policy, with_reference(80), "explore-fb")
    out = tmp_path / "fb.parquet"
    summary = run_feedback_quiet(str(root), out)
    labels = pl.read_parquet(out)
    assert summary["label_rows"] == labels.height > 0
    assert summary["tenants"] == ["default"]
    fast, balanced = policy.tier("fast").primary.name, policy.tier("balanced").primary.name
    fb = load_feedback(f"{out}:{fast},{balanced}", [parse_spec(f"{out}:{fast},{balanced}")])
    assert fb.n > 0 and fb.quality.shape == (fb.n, 2)
    # Another night, the same prompts: each (prompt, model) is kept once, the newest.
    run(tmp_path, sim, policy, with_reference(80), "explore-fb2", out=root)
    again = run_feedback_quiet(str(root), out)
    assert again["files"] > summary["files"] and again["label_rows"] > summary["label_rows"]
    # The same labels written twice (a redelivery across midnight): each kept once.
    first = sorted(root.glob("_labels/**/*.parquet"))[0]
    shutil.copy(first, first.with_name("copy.parquet"))
    third = run_feedback_quiet(str(root), out)
    assert third["label_rows_read"] > third["label_rows"] == again["label_rows"]
    assert (
        pl.read_parquet(out).select(pl.struct("prompt_id", "model").is_duplicated().any()).item()
        is False
    )
    with pytest.raises(InputError, match="no labels"):
        run_feedback_quiet(str(root), tmp_path / "none.parquet", tenants=["someone-else"])
    with pytest.raises(InputError, match=r"\.parquet"):
        run_feedback_quiet(str(root), tmp_path / "fb.csv")


def run_feedback_quiet(root: str, out: Path, **kwargs: Any) -> dict[str, Any]:
    from workers.settings import S3Settings
    from workers.storage import Storage

    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    return run_feedback(Storage(S3Settings()), root, out, console, **kwargs)


def test_minimised_text_is_never_written_as_a_label(tmp_path: Path, sim: SimServer) -> None:
    """``minimise`` keeps the expert tier's answers out of outputs: no label pair with an
    expert answer is written (nor its other half); fast/balanced pairs are."""
    policy = policies.build(
        explore={"rate": 1.0}, minimise=[{"tiers": ["expert"], "drop": ["response"]}]
    )
    out, root = run(tmp_path, sim, policy, with_reference(40), "explore-min")
    explored = out.filter(pl.col("explored").is_not_null())
    assert explored.height == out.filter(pl.col("reference").is_not_null()).height == 30
    assert "expert" in set(explored["tier"]) | set(explored["explored"])
    labels = labels_of(root)
    assert labels.height > 0 and set(labels["tier"]) == {"fast", "balanced"}
    assert labels.group_by("prompt_id").len()["len"].to_list() == [2] * (labels.height // 2)


def test_max_rows_caps_exploration_spend(tmp_path: Path, sim: SimServer) -> None:
    policy = policies.build(explore={"rate": 1.0, "max_rows": 3})
    out, _ = run(tmp_path, sim, policy, with_reference(40), "explore-cap")
    per_part = out.filter(pl.col("explored").is_not_null()).group_by("tier").len()
    assert per_part["len"].max() <= 3  # type: ignore[operator]
    assert out.filter(pl.col("explored").is_not_null()).height > 0


def test_a_pair_judged_on_an_earlier_night_is_not_paid_for_again(
    tmp_path: Path, sim: SimServer
) -> None:
    """The planner lists the tenant's judged (prompt, model) pairs; the next night's job
    explores none of the prompts whose pair is judged already."""
    policy = explore_policy(rate=1.0)
    first, root = run(tmp_path, sim, policy, with_reference(40), "night-a")
    judged = first.filter(pl.col("explored").is_not_null()).height
    assert judged == 30  # every row with a reference
    files = sorted(root.glob("_labels/**/*.parquet"))
    second, _ = run(tmp_path, sim, policy, with_reference(40), "night-b", out=root)
    assert second["explored"].null_count() == second.height  # all judged already
    assert sorted(root.glob("_labels/**/*.parquet")) == files  # no new labels
    assert (root / "job_id=night-b" / "_job" / "explored.parquet").is_file()
