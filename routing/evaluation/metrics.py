"""The metrics of a frontier: PGR, APGR and CPT (RouteLLM), AIQ (RouterBench), the cost
saving at 95 % of the strong model's quality, and the AUC of the scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from routing.evaluation.curve import Curve, check_scores
from routing.evaluation.labels import EPS, Floats, Pair, needs_strong


def pgr(pair: Pair, quality: npt.ArrayLike) -> Floats:
    """Performance gap recovered: ``(q - q_weak) / (q_strong - q_weak)`` (mean qualities);
    0 at all-weak, 1 at all-strong, above 1 when routing beats the strong model."""
    gap = pair.gap
    q = np.asarray(quality, dtype=np.float64)
    return (q - pair.q_weak.mean()) / gap if abs(gap) > EPS else np.full(q.shape, np.nan)


def apgr(pair: Pair, curve: Curve) -> float | None:
    """Average performance gap recovered (RouteLLM): the area under PGR versus the share of
    calls to the strong model, over shares 0 … 1 (trapezoids over every operating point;
    RouteLLM samples 10 bins). 0.5 is the random router; None when the gap is 0."""
    values = pgr(pair, curve.quality)
    return None if np.isnan(values).any() else _area(curve.share, values)


def _area(x: Floats, y: Floats) -> float:
    """Trapezoidal area under y(x) (``np.trapezoid``, which numpy < 2 lacks)."""
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def cpt(pair: Pair, curve: Curve, target: float) -> float | None:
    """Call-performance threshold CPT(target) (RouteLLM): the smallest share of calls to the
    strong model at which PGR reaches ``target`` (0.5 for CPT(50 %)), interpolated between
    operating points; None if never reached."""
    values = pgr(pair, curve.quality)
    hits = np.flatnonzero(values >= target - EPS)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    return float(curve.share[0]) if i == 0 else _cross(curve.share, values, i, target)


def _cross(x: Floats, y: Floats, i: int, target: float) -> float:
    """x where the segment (i-1, i) reaches y = target (y[i-1] < target <= y[i])."""
    t = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def aiq(pair: Pair, curve: Curve) -> float | None:
    """Average improvement in quality (RouterBench): the area under the router's quality-
    versus-cost curve divided by the cost range, from all-weak cost to all-strong cost.

    As in RouterBench the curve is first replaced by its non-decreasing concave hull (any
    two operating points can be mixed at random, and spending more is never forced), so
    AIQ is in quality units: the random router scores the mean of the two models'
    qualities. None when both models cost the same.
    """
    lo, hi = float(pair.c_weak.mean()), float(pair.c_strong.mean())
    if hi - lo <= EPS:
        return None
    x, y = _upper_hull(curve.cost, curve.quality)
    y = np.maximum.accumulate(y)
    grid = np.unique(np.clip(np.concatenate([x, [lo, hi]]), lo, hi))
    return _area(grid, np.interp(grid, x, y)) / (hi - lo)


def _upper_hull(x: Floats, y: Floats) -> tuple[Floats, Floats]:
    """The upper concave hull of points (monotone chain), by increasing x."""
    hull: list[tuple[float, float]] = []
    for px, py in sorted(zip(x.tolist(), y.tolist(), strict=True)):
        if hull and hull[-1][0] == px:  # same cost: keep the better quality (sorted last)
            hull.pop()
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0:  # b is not above a→p
                hull.pop()
            else:
                break
        hull.append((px, py))
    return np.array([p[0] for p in hull]), np.array([p[1] for p in hull])


def saving_at(pair: Pair, curve: Curve, fraction: float = 0.95) -> float | None:
    """Cost saving at ``fraction`` of the strong model's quality: ``1 - cost / all-strong
    cost`` at the cheapest operating point (along the curve, interpolated) whose quality
    reaches ``fraction × q_strong``; None if the curve never reaches it."""
    target = fraction * float(pair.q_strong.mean())
    hits = np.flatnonzero(curve.quality >= target - EPS)
    all_strong = float(pair.c_strong.mean())
    if len(hits) == 0 or all_strong <= 0:
        return None
    i = int(hits[0])
    cost = float(curve.cost[0]) if i == 0 else _cross(curve.cost, curve.quality, i, target)
    return 1.0 - cost / all_strong


def needs_strong_auc(pair: Pair, scores: npt.ArrayLike, threshold: float | None = None) -> float:
    """ROC AUC of the scores for "the strong model is the cheapest adequate one" (for 0/1
    labels: the weak model fails and the strong one succeeds); NaN if one class is empty."""
    y = needs_strong(pair, threshold)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, check_scores(pair, scores)))
