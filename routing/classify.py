"""Complexity scorers: numbers, not decisions.

A scorer maps a batch of features to ``P(the prompt needs a stronger tier)`` in [0, 1].
The policy (:mod:`routing.route`) turns scores into tiers with thresholds. The learned
scorer is a later addition behind the same Protocol.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
import polars as pl

from routing.features import FEATURE_VERSION


class Scorer(Protocol):
    """Scores a batch of feature rows. A row's score depends on that row only:
    :func:`routing.router.route_batch` scores each distinct (system, prompt) of a batch
    once and gives duplicates the same score. ``version`` names the scorer's behaviour:
    two scorers with the same version score every row the same (decisions are remembered
    across batches by policy and scorer version: routing.decision_memo)."""

    version: str

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> np.ndarray: ...


class HeuristicScorer:
    """A logistic score over hand-weighted features; needs no training.

    The weights put short single questions low, long multi-part, code, math and
    reasoning-heavy prompts high. It is the first scorer of the spine; its quality is
    measured by the offline evaluation, not assumed.
    """

    version = f"heuristic-1/{FEATURE_VERSION}"

    _BIAS = -3.2
    _WEIGHTS: ClassVar[dict[str, float]] = {
        "code_markers": 0.08,
        "math_markers": 0.25,
        "step_markers": 0.30,
        "reasoning_verbs": 0.55,
        "constraint_words": 0.12,
        "n_questions": 0.10,
        "non_ascii_ratio": 1.0,
    }

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> np.ndarray:
        z = np.full(features.height, self._BIAS)
        z += 0.55 * np.log1p(np.asarray(input_tokens, dtype=np.float64))
        for name, weight in self._WEIGHTS.items():
            col = features.get_column(name).to_numpy().astype(np.float64)
            z += weight * np.minimum(col, 12.0)
        result: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return result
