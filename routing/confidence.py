"""How good is an answer? The cascade's signals (pure; ``CascadeSpec`` picks one).

:func:`confidence` reads the answer alone: ``exp(mean token logprob)`` — the geometric
mean of the token probabilities — when the provider returned logprobs; without them 1.0
(nothing says it is unsure). Then three overrides to 0.0: an empty answer, a truncated one
(``finish_reason == "length"``), and a refusal or "cannot answer" marker near its start
(``REFUSAL``, case-insensitive).

:func:`verifier_scores` reads the prompt and the answer with a verifier trained by
``batch-router train --verifier`` (``routing.learned``): 1 − its score, i.e. with the
default ``win_rate`` label 1 − the stronger tier's win rate against this answer (a tie
counts half: two equally good answers score 0.5) — exactly 1 − the ``score`` that
``batch-router eval --responses --scores-out`` writes — with the same three overrides to 0.0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from routing.features import compute_features
from routing.learned.answer import answer_frame
from routing.tokens import count_tokens

if TYPE_CHECKING:
    from routing.learned.scorer import LearnedScorer

REFUSAL = re.compile(
    r"\b(?:i\s+(?:cannot|can't|can not|am unable to|am not able to|don't know|do not know)"
    r"|i'm\s+(?:unable|not able|sorry, but i can(?:no|')t)"
    r"|as an ai\b|unable to (?:answer|help|comply)|not enough information)",
    re.IGNORECASE,
)
_HEAD = 200  # characters of the answer searched for a refusal


def confidence(
    text: str | None, finish_reason: str | None, logprobs: Sequence[float] | None
) -> float:
    """Confidence in [0, 1] of one answer (see the module doc)."""
    if not text or not text.strip() or finish_reason == "length":
        return 0.0
    if REFUSAL.search(text[:_HEAD]):
        return 0.0
    if not logprobs:
        return 1.0
    return math.exp(sum(logprobs) / len(logprobs))


def verifier_scores(
    verifier: LearnedScorer,
    prompts: Sequence[str],
    texts: Sequence[str | None],
    finish_reasons: Sequence[str | None],
    logprobs: Sequence[Sequence[float] | None],
) -> list[float]:
    """P(the answer is adequate) per (prompt, answer), in [0, 1] (see the module doc)."""
    if not prompts:
        return []
    series = pl.Series("prompt", prompts, dtype=pl.String)
    answers = answer_frame(series, texts, finish_reasons=finish_reasons, logprobs=logprobs)
    tokens = count_tokens(prompts)
    needs = verifier.score_texts(series, compute_features(series), tokens, answers)
    hard = [confidence(t, f, None) == 0.0 for t, f in zip(texts, finish_reasons, strict=True)]
    scores: list[float] = np.where(hard, 0.0, np.clip(1.0 - needs, 0.0, 1.0)).tolist()
    return scores
