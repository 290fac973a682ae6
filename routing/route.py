"""The routing decision: scores to tiers with the policy's thresholds.

Score is separate from decision: the scorer says how hard a prompt looks, the policy's
ascending ``max_score`` thresholds say which tier that buys. Every decision carries a
human-readable ``route_reason``.
"""

from __future__ import annotations

import numpy as np

from routing.policy import Policy


def assign_tiers(scores: np.ndarray, policy: Policy) -> tuple[list[str], list[str]]:
    """Tier name and route reason per score."""
    thresholds = np.array([t.max_score for t in policy.tiers[:-1]], dtype=np.float64)
    index = np.searchsorted(thresholds, scores, side="right")
    names = policy.tier_names
    tiers = [names[i] for i in index]
    reasons = [_reason(s, int(i), thresholds, names) for s, i in zip(scores, index, strict=True)]
    return tiers, reasons


def _reason(score: float, index: int, thresholds: np.ndarray, names: tuple[str, ...]) -> str:
    if index < len(thresholds):
        return f"score {score:.3f} < {thresholds[index]:.2f} → {names[index]}"
    return (
        f"score {score:.3f} ≥ {thresholds[-1]:.2f} → {names[index]}"
        if len(thresholds)
        else f"single tier → {names[index]}"
    )
