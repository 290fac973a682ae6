"""The baseline routers' scores: the hindsight oracle, length-only and random (the fixed
``always-weak`` / ``always-strong`` policies need none)."""

from __future__ import annotations

import numpy as np

from routing.evaluation.labels import EPS, Floats, Pair, needs_strong


def oracle_scores(pair: Pair, threshold: float | None = None) -> Floats:
    """The hindsight router's scores (distinct, in (0, 1]), best candidates for strong first:
    prompts whose cheapest adequate model is the strong one, then other quality gains (both
    by quality gained per extra dollar), then no change (cheapest first), then losses."""
    gain = pair.q_strong - pair.q_weak
    extra = pair.c_strong - pair.c_weak
    per_dollar = gain / np.maximum(extra, EPS)
    category = np.select([needs_strong(pair, threshold), gain > EPS, gain >= -EPS], [3, 2, 1], 0)
    within = np.where(np.abs(gain) <= EPS, -extra, per_dollar)
    ranks = np.empty(pair.n)
    ranks[np.lexsort((within, category))] = np.arange(1, pair.n + 1)
    return ranks / max(pair.n, 1)


def length_scores(pair: Pair) -> Floats:
    """The length-only baseline: the prompt's input tokens as its score."""
    return pair.input_tokens.astype(np.float64)


def random_scores(n: int, seed: int) -> Floats:
    """One draw of a random router (the ``random`` baseline uses the exact expectation)."""
    return np.random.default_rng(seed).random(n)
