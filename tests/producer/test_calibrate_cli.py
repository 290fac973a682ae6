"""``batch-router calibrate`` as a user runs it: on the shared arena labels (three tiers from
three of its models) and on a small synthetic file; the written policy routes the labelled
prompts exactly as reported; wrong input is a clean error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from producer.commands.evaluate import score_prompts
from routing.classify import HeuristicScorer
from routing.policy import load_policy
from routing.route import assign_tiers
from tests import data
from tests.cli import CliRunner, assert_clean_error

ARENA = data.LABELS / "arena_bench_v1.parquet"
ARENA_TIERS = (
    "--model",
    "fast=Mistral-7B-Instruct-v0.1",
    "--model",
    "balanced=Mixtral-8x7B-Instruct-v0.1",
    "--model",
    "expert=gpt-4-turbo",
)


def _synthetic(path: Path) -> None:
    """Short prompts every model answers; long reasoning prompts only the strong one."""
    rows = []
    for i in range(60):
        hard = i % 3 == 0
        prompt = (
            f"prove and derive step by step the theorem {i} about the integral of a polynomial"
            if hard
            else f"what is the capital of country {i}?"
        )
        for model, ok in (("small", not hard), ("medium", not hard or i % 2 == 0), ("large", True)):
            rows.append(
                {
                    "prompt_id": f"p{i}",
                    "prompt": prompt,
                    "model": model,
                    "quality": float(ok),
                    "input_tokens": 20,
                    "output_tokens": 100,
                    "cost_usd": None,
                }
            )
    pl.DataFrame(rows).write_parquet(path)


SYN_TIERS = ("--model", "fast=small", "--model", "balanced=medium", "--model", "expert=large")


def test_synthetic_min_quality_writes_a_policy_that_routes_as_reported(
    tmp_path: Path, cli: CliRunner
) -> None:
    _synthetic(tmp_path / "labels.parquet")
    proc = cli(
        "calibrate",
        "labels.parquet",
        *SYN_TIERS,
        "--min-quality",
        "1.0",
        "--out",
        "cal.yaml",
        "--json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    after = result["after"]
    assert after["quality_retained"] == pytest.approx(1.0)
    assert after["cost_per_1k"] < after["top_cost_per_1k"]  # easy prompts left the expert tier
    policy = load_policy(tmp_path / "cal.yaml")
    assert policy.version == result["policy_version"]
    assert [t.max_score for t in policy.tiers[:-1]] == pytest.approx(after["thresholds"])
    # independent check: score the prompts and route them with the written policy
    labels = pl.read_parquet(tmp_path / "labels.parquet").filter(pl.col("model") == "large")
    labels = labels.sort("prompt_id")
    scores = score_prompts(HeuristicScorer(), labels.get_column("prompt"))
    tiers, _ = assign_tiers(scores, policy)
    shares = [tiers.count(t) / len(tiers) for t in policy.tier_names]
    assert shares == pytest.approx(after["shares"], abs=1e-6)  # JSON rounds to 6 places


def test_table_output_and_the_other_targets(tmp_path: Path, cli: CliRunner) -> None:
    _synthetic(tmp_path / "labels.parquet")
    proc = cli("calibrate", "labels.parquet", *SYN_TIERS, "--max-top-share", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "share expert" in proc.stdout and "quality retained" in proc.stdout
    assert "use --out to write the policy" in proc.stdout
    proc = cli("calibrate", "labels.parquet", *SYN_TIERS, "--max-cost-per-1k", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["after"]["cost_per_1k"] <= 1


def test_wrong_input_is_a_clean_error(tmp_path: Path, cli: CliRunner) -> None:
    _synthetic(tmp_path / "labels.parquet")
    two = ("--min-quality", "0.9", "--max-top-share", "0.2")
    assert_clean_error(cli("calibrate", "labels.parquet", *SYN_TIERS, *two), "exactly one of")
    assert_clean_error(
        cli("calibrate", "labels.parquet", "--model", "fast=small", "--min-quality", "0.9"),
        "missing ['balanced', 'expert']",
    )
    assert_clean_error(
        cli("calibrate", "labels.parquet", *SYN_TIERS[:-1], "expert=huge", "--min-quality", "0.9"),
        "no labels for ['huge']",
    )
    assert_clean_error(
        cli("calibrate", "labels.parquet", *SYN_TIERS, "--min-quality", "2"), "fraction"
    )
    assert_clean_error(
        cli("calibrate", "nope.parquet", *SYN_TIERS, "--min-quality", "0.9"), "not found"
    )
    assert_clean_error(
        cli("calibrate", "labels.parquet", *SYN_TIERS, "--max-cost-per-1k", "0"),
        "cheapest routing costs",
    )


def test_arena_labels(tmp_path: Path, cli: CliRunner) -> None:
    data.require(ARENA)
    proc = cli("calibrate", str(ARENA), *ARENA_TIERS, "--min-quality", "0.95", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["prompts"] > 250
    assert result["after"]["quality_retained"] >= 0.95
    assert sum(result["after"]["shares"]) == pytest.approx(1.0)
    assert np.all(np.diff(result["after"]["thresholds"]) > 0)
