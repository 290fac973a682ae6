"""The learning loop as a user runs it (issue 16): ``run`` with ``explore:`` writes judged
labels, ``feedback`` collects them, ``train --feedback`` learns from them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.policy import load_policy
from tests import policies
from tests.cli import CliRunner
from tests.producer.labels import WEAK, write_labels
from tests.workers.pipeline import prompts

pytestmark = pytest.mark.e2e


def test_run_explore_feedback_train(cli: CliRunner, tmp_path: Path) -> None:
    table = prompts(120)
    refs = pa.array([str(i + 1) for i in range(120)], pa.string())
    pq.write_table(table.append_column("reference", refs), tmp_path / "in.parquet")
    policy_file = policies.write(tmp_path / "explore.yaml", explore={"rate": 0.5})
    ran = cli("run", "in.parquet", "--policy", "explore.yaml", "--output", "out")
    assert ran.returncode == 0, ran.stderr
    assert list((tmp_path / "out" / "_labels").glob("day=*/tenant=default/*.parquet"))

    collected = cli("feedback", "out", "--out", "fb.parquet")
    assert collected.returncode == 0, collected.stderr
    assert "judged prompts" in collected.stdout
    labels = pl.read_parquet(tmp_path / "fb.parquet")
    assert labels.height > 0 and {"prompt", "model", "quality", "response"} <= set(labels.columns)

    bad = cli("feedback", "out", "--out", "fb.parquet", "--since", "2026-13-01")
    assert bad.returncode == 2 and "not a date" in bad.stderr
    none = cli("feedback", "out", "--out", "x.parquet", "--tenant", "nobody")
    assert none.returncode != 0 and "no labels" in none.stderr

    policy = load_policy(policy_file)
    fast, balanced = policy.tier("fast").primary.name, policy.tier("balanced").primary.name
    spec = f"{write_labels(tmp_path / 'labels.parquet', 'toy', n=40)}:{WEAK},strong-x"
    trained = cli(
        "train", spec, "--feedback", f"fb.parquet:{fast},{balanced}", "--out", "router.zip",
        "--folds", "3",
    )  # fmt: skip
    if labels.filter(pl.col("tier").is_in(["fast", "balanced"])).height == 0:
        pytest.skip("no fast/balanced pair explored in this sample")
    assert trained.returncode == 0, trained.stderr
    with zipfile.ZipFile(tmp_path / "router.zip") as zf:
        meta = json.loads(zf.read("metadata.json"))
    assert meta["feedback"][0]["prompts"] > 0
