"""Scores to tiers: threshold boundaries, monotonicity, reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.policy import Policy
from routing.route import assign_tiers
from tests.routing.helpers import PROPERTY, tiers_policy

ABC = tiers_policy({"name": "a", "max_score": 0.25}, {"name": "b", "max_score": 0.5}, {"name": "c"})


def _tiers(scores: list[float], policy: Policy) -> list[str]:
    return assign_tiers(np.array(scores, dtype=np.float64), policy)[0]


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (0.0, "fast"),
        (0.1, "fast"),
        (math.nextafter(0.30, 0.0), "fast"),
        (0.30, "balanced"),  # a tier takes scores strictly below its max_score
        (math.nextafter(0.30, 1.0), "balanced"),
        (math.nextafter(0.60, 0.0), "balanced"),
        (0.60, "expert"),
        (0.99, "expert"),
        (1.0, "expert"),
    ],
)
def test_default_thresholds_at_the_boundaries(
    default_policy: Policy, score: float, tier: str
) -> None:
    assert _tiers([score], default_policy) == [tier]


def test_one_call_routes_a_whole_batch_in_order(default_policy: Policy) -> None:
    scores = [0.9, 0.1, 0.45, 0.3, 0.6, 0.0]
    assert _tiers(scores, default_policy) == [
        "expert",
        "fast",
        "balanced",
        "balanced",
        "expert",
        "fast",
    ]


def test_empty_batch(default_policy: Policy) -> None:
    assert assign_tiers(np.array([], dtype=np.float64), default_policy) == ([], [])


def test_reasons_name_score_threshold_and_tier(default_policy: Policy) -> None:
    _, reasons = assign_tiers(np.array([0.1234, 0.45, 0.75]), default_policy)
    assert reasons[0] == "score 0.123 < 0.30 → fast"
    assert reasons[1] == "score 0.450 < 0.60 → balanced"
    assert reasons[2] == "score 0.750 ≥ 0.60 → expert"


def test_single_tier_policy_takes_everything() -> None:
    policy = tiers_policy({"name": "only"})
    tiers, reasons = assign_tiers(np.array([0.0, 0.5, 1.0]), policy)
    assert tiers == ["only"] * 3
    assert reasons == ["single tier → only"] * 3


def test_four_tiers() -> None:
    policy = tiers_policy(
        {"name": "nano", "max_score": 0.1},
        {"name": "small", "max_score": 0.2},
        {"name": "medium", "max_score": 0.7},
        {"name": "large"},
    )
    assert _tiers([0.05, 0.1, 0.15, 0.2, 0.69, 0.7, 1.0], policy) == [
        "nano",
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]


@PROPERTY
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=50))
def test_chosen_tier_is_the_first_whose_max_score_exceeds_the_score(scores: list[float]) -> None:
    policy = ABC
    tiers = _tiers(scores, policy)
    for score, tier in zip(scores, tiers, strict=True):
        index = policy.tier_names.index(tier)
        chosen = policy.tiers[index]
        assert chosen.max_score is None or score < chosen.max_score
        assert all(t.max_score is not None and score >= t.max_score for t in policy.tiers[:index])


@PROPERTY
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=50))
def test_a_harder_prompt_never_gets_a_cheaper_tier(scores: list[float]) -> None:
    policy = ABC
    ordered = sorted(scores)
    ranks = [policy.tier_names.index(t) for t in _tiers(ordered, policy)]
    assert ranks == sorted(ranks)
