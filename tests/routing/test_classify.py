"""The heuristic scorer: a probability-like number per prompt, monotone in its signals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from routing.classify import HeuristicScorer, Scorer
from routing.features import FEATURE_VERSION, FEATURES, compute_features
from routing.policy import Policy
from routing.route import assign_tiers
from routing.tokens import count_tokens

SCORER = HeuristicScorer()

EASY = "What is the capital of France?"
HARD = (
    "Prove that there are infinitely many primes. First derive the key lemma, then prove "
    "the theorem step by step. Compare your approach with Euler's proof and explain why "
    "both work. Your answer must be at most 300 words and formatted as a table.\n"
    "1. Lemma\n2. Proof\n3. Comparison"
)


def _score(prompts: list[str]) -> np.ndarray:
    return SCORER.score(compute_features(pl.Series(prompts)), count_tokens(prompts))


def _zeros(n: int = 1) -> pl.DataFrame:
    return pl.DataFrame({name: [0] * n for name in FEATURES})


def test_is_a_scorer_with_a_versioned_name() -> None:
    scorer: Scorer = SCORER
    assert FEATURE_VERSION in scorer.version
    assert scorer.version.startswith("heuristic-")


def test_one_score_per_row_strictly_between_zero_and_one() -> None:
    scores = _score([EASY, HARD, "", "日本語で答えてください"])
    assert scores.shape == (4,)
    assert scores.dtype == np.float64
    assert np.all((scores > 0) & (scores < 1))


def test_empty_batch() -> None:
    assert SCORER.score(_zeros(0), np.array([], dtype=np.int64)).shape == (0,)


def test_easy_and_hard_prompts_land_at_the_ends(default_policy: Policy) -> None:
    tiers, _ = assign_tiers(_score([EASY, HARD]), default_policy)
    assert tiers == ["fast", "expert"]


def test_more_input_tokens_never_lowers_the_score() -> None:
    tokens = np.array([0, 1, 10, 100, 1_000, 100_000, 10**9])
    scores = SCORER.score(_zeros(len(tokens)), tokens)
    assert np.all(np.diff(scores) > 0)
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    "feature",
    [
        "code_markers",
        "math_markers",
        "step_markers",
        "reasoning_verbs",
        "constraint_words",
        "n_questions",
    ],
)
def test_each_complexity_signal_raises_the_score(feature: str) -> None:
    features = _zeros(4).with_columns(pl.Series(feature, [0, 1, 3, 12]))
    scores = SCORER.score(features, np.full(4, 50))
    assert np.all(np.diff(scores) > 0), feature


def test_huge_marker_counts_stay_finite() -> None:
    features = pl.DataFrame({name: [10**9] for name in FEATURES})
    score = SCORER.score(features, np.array([10**9]))
    assert np.isfinite(score).all()
    assert 0.0 < score[0] <= 1.0


def test_deterministic() -> None:
    assert np.array_equal(_score([EASY, HARD]), _score([EASY, HARD]))
