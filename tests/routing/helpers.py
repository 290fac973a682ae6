"""Test helpers shared by the routing tests (plain functions and classes, not fixtures)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import settings

from routing.policy import Policy, parse_policy


def tiers_policy(*tiers: dict[str, Any]) -> Policy:
    """A policy on the simulated provider with the given tiers (name, max_score, limits)."""
    data = {
        "providers": {"sim": {"base_url": "simulated"}},
        "tiers": [
            {
                "models": [
                    {
                        "name": f"m-{t['name']}",
                        "provider": "sim",
                        "input_per_mtok": str(t.get("input", 1)),
                        "output_per_mtok": str(t.get("output", 1)),
                    }
                ],
                **{k: v for k, v in t.items() if k not in ("input", "output")},
            }
            for t in tiers
        ],
    }
    return parse_policy(yaml.safe_dump(data), "tiers-policy.yaml")


class FixedScorer:
    """A scorer that returns preset scores, so routing tests do not depend on heuristics.

    Its scores go by position, not by row, so each instance is its own version: the
    decision memo (keyed by scorer version) never hands one test's decisions to another."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.version = f"fixed-test/{uuid.uuid4().hex[:12]}"

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> np.ndarray:
        assert features.height == len(self.scores) == len(input_tokens)
        return self.scores.copy()


# Property tests: no deadline (tests assert no timings) and no example database on disk.
PROPERTY = settings(deadline=None, database=None, max_examples=100)


# The shipped example policy with rules, entitlements and PII routing.
GOVERNED = Path(__file__).resolve().parents[2] / "infra" / "policies" / "governed.yaml"
PII_PROMPTS = [
    "Email me at jane.doe@example.com about the invoice.",
    "Card 4111 1111 1111 1111 was charged twice, why?",
    "Ping 8.8.8.8 and 10.1.2.3 from EMP-123456's laptop.",
]


def prompt_table(
    prompts: list[str], system: list[str | None] | None = None, **extra: list
) -> pa.Table:
    """An input table of ``prompts`` (ids p0, p1, …), optional ``system`` and ``extra``
    columns."""
    columns: dict[str, list] = {
        "prompt_id": [f"p{i}" for i in range(len(prompts))],
        "prompt": prompts,
    }
    if system is not None:
        columns["system"] = system
    return pa.table({**columns, **extra})


def corpus_batches(corpus_path: Path, rows: int, size: int) -> list[pa.Table]:
    """Corpus prompts with repeats inside and across batches, systems, rule columns, PII."""
    prompts = pq.read_table(corpus_path, columns=["prompt"]).column("prompt").to_pylist()
    rng = np.random.default_rng(7)
    picked = [prompts[i] for i in rng.integers(0, 400, rows)]  # many repeats
    picked[::17] = [PII_PROMPTS[i % 3] for i in range(len(picked[::17]))]
    systems = [None, "Be terse.", "Answer in French.", ""]
    table = pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(rows)],
            "prompt": picked,
            "system": [systems[i] for i in rng.integers(0, 4, rows)],
            "tenant": [["acme", "globex", None][i] for i in rng.integers(0, 3, rows)],
            "customer_tier": [["pro", "gold", "free"][i] for i in rng.integers(0, 3, rows)],
            "domain": [["legal", None, "medical"][i] for i in rng.integers(0, 3, rows)],
            "max_output_tokens": pa.array(rng.integers(0, 3, rows) * 500, pa.int64()),
        }
    )
    return [table.slice(i, size) for i in range(0, rows, size)]
