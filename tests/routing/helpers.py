"""Test helpers shared by the routing tests (plain functions and classes, not fixtures)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import polars as pl
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
