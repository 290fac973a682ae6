"""Helpers of the tests that serve tier batches through the local executor and the
simulated provider (fallback, breakers, budgets, cascade, entitlements): every row starts on
one tier (``ConstScorer``), and the policy has fast retries and a quick breaker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from routing.policy import Policy
from tests import policies
from tests.workers.pipeline import make_settings, plan_job, results, write_input
from workers import local, stages
from workers.jobstate import MemoryJobTracker
from workers.settings import S3Settings
from workers.simprovider import SimServer
from workers.storage import Storage

FAST, BALANCED, EXPERT = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1"


class ConstScorer:
    """Every prompt gets the same score (so every row starts on one tier)."""

    version = "const"

    def __init__(self, score: float) -> None:
        self._score = score

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> np.ndarray:
        return np.full(features.height, self._score)


def policy(**changes: Any) -> Policy:
    """The default policy with fast retries, a quick breaker and ``changes`` merged in
    (``tiers`` as {name: {field: value}})."""
    retry = {"max_attempts": 2, "base_delay_s": 0.001, "max_delay_s": 0.01}
    breaker = {"failures": 3, "cooldown_s": 60, "min_calls": 1000}
    return policies.build(**{"retry": retry, "breaker": breaker, **changes})


def prompts(n: int, words: int = 12) -> pa.Table:
    return pa.table(
        {
            "prompt_id": [f"p{i:03d}" for i in range(n)],
            "prompt": [
                f"Question {i}: " + " ".join(f"w{i}x{j}" for j in range(words)) for i in range(n)
            ],
        }
    )


def run(
    tmp_path: Path, sim: SimServer, pol: Policy, score: float, table: pa.Table
) -> tuple[stages.Runtime, dict[str, Any], pl.DataFrame]:
    """Run ``table`` as one job under ``pol``, every prompt scored ``score``."""
    rt = stages.Runtime(
        settings=make_settings(sim),
        storage=Storage(S3Settings()),
        tracker=MemoryJobTracker(),
        scorer=ConstScorer(score),
    )
    uri = write_input(tmp_path / "in" / "p.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", policy=pol)
    manifest = local.run_job(rt, plan)
    out = results(rt, plan)
    assert out.height == table.num_rows == manifest["rows_out"]
    return rt, manifest, out
