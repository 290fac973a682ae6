"""The frontier: the operating points of a score-ranked router, from all-weak to all-strong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from routing.evaluation.labels import Floats, Pair


@dataclass(frozen=True)
class Curve:
    """The operating points of a score-ranked router, from all-weak (share 0) to all-strong.

    ``share`` is the fraction of prompts sent to the strong model, ``quality`` the mean
    quality and ``cost`` the mean cost per prompt (USD) at that point.
    """

    share: Floats
    quality: Floats
    cost: Floats

    def at(self, share: float) -> tuple[float, float]:
        """(quality, cost) at a strong share, linear between points (random tie-breaking)."""
        return (
            float(np.interp(share, self.share, self.quality)),
            float(np.interp(share, self.share, self.cost)),
        )


def check_scores(pair: Pair, scores: npt.ArrayLike) -> Floats:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (pair.n,):
        raise ValueError(f"need one score per prompt ({pair.n}), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    return s


def frontier(pair: Pair, scores: npt.ArrayLike) -> Curve:
    """Route the highest-scored prompts to the strong model, 0 … n of them.

    One point per group of equal scores (a threshold cannot split a tie); between points the
    curve is linear, which is the expectation of breaking the tie at random.
    """
    s = check_scores(pair, scores)
    order = np.argsort(-s, kind="stable")
    ends = np.flatnonzero(np.append(s[order][1:] != s[order][:-1], True)) + 1
    k = np.concatenate([[0], ends]) if pair.n else np.zeros(1, dtype=np.int64)
    gain = np.concatenate([[0.0], np.cumsum((pair.q_strong - pair.q_weak)[order])])[k]
    extra = np.concatenate([[0.0], np.cumsum((pair.c_strong - pair.c_weak)[order])])[k]
    n = max(pair.n, 1)
    return Curve(k / n, pair.q_weak.mean() + gain / n, pair.c_weak.mean() + extra / n)


def selection(scores: npt.ArrayLike, share: float) -> Floats:
    """P(routed to strong) per prompt when the top ``share`` of prompts by score go strong.

    1 above the cut, 0 below, and, for the group of equal scores the cut falls in, the
    fraction of that group still needed (random tie-breaking in expectation).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    starts_mask = np.append(True, ss[1:] != ss[:-1]) if n else np.zeros(0, dtype=np.bool_)
    group = np.cumsum(starts_mask) - 1
    starts = np.flatnonzero(starts_mask)
    ends = np.append(starts[1:], n)
    lo, hi = starts[group], ends[group]
    p = np.empty(n)
    p[order] = np.clip((share * n - lo) / (hi - lo), 0.0, 1.0)
    return p
