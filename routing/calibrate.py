"""Pick a policy's score thresholds on labelled prompts for a target.

Input: one score per prompt, and for every tier (cheapest first) the quality and the cost of
the model that stands for it on each prompt. Thresholds ``t_1 < … < t_{T-1}`` send a prompt
with score ``s`` to the first tier ``k`` with ``s < t_{k+1}`` — exactly what
:func:`routing.route.assign_tiers` does. One of three targets:

- ``max_top_share``: at most this fraction of prompts to the last (strongest) tier; the
  best mean quality under that cap, then the lowest cost;
- ``min_quality``: keep at least this fraction of the last tier's mean quality (0.95 =
  95 %); the lowest cost that does;
- ``max_cost_per_1k``: spend at most this many USD per 1,000 prompts; the best mean
  quality for it, then the lowest cost.

Search: sort prompts by score; a threshold is a cut between two distinct scores, taken on a
grid of at most ``grid`` score quantiles. Every non-decreasing combination of cuts is scored
exactly with prefix sums (``O(T)`` per combination), so the answer is the optimum over the
grid, not a local one. Equal cuts (an empty tier) become distinct thresholds inside the
same gap between two scores, as the policy needs strictly increasing ones; combinations no
thresholds in [0, 1] can express are skipped. The reported figures are recomputed with the
final thresholds, so they are what the policy will do on these prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Literal

import numpy as np
import numpy.typing as npt

from routing.errors import ConfigError

Target = Literal["max_top_share", "min_quality", "max_cost_per_1k"]
Floats = npt.NDArray[np.float64]
MAX_COMBINATIONS = 2_000_000


@dataclass(frozen=True)
class Outcome:
    """What thresholds do on the labelled prompts."""

    thresholds: tuple[float, ...]
    shares: tuple[float, ...]  # fraction of prompts per tier
    quality: float  # mean quality of the routed answers
    quality_retained: float  # quality / the last tier's mean quality
    cost_per_1k: float  # USD per 1,000 prompts
    top_cost_per_1k: float  # the same, everything to the last tier
    saving: float  # 1 - cost / top cost

    def to_dict(self) -> dict[str, object]:
        return {
            "thresholds": [round(t, 6) for t in self.thresholds],
            "shares": [round(s, 6) for s in self.shares],
            "quality": self.quality,
            "quality_retained": self.quality_retained,
            "cost_per_1k": self.cost_per_1k,
            "top_cost_per_1k": self.top_cost_per_1k,
            "saving": self.saving,
        }


def route_index(scores: npt.ArrayLike, thresholds: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Tier index per score (the rule of :func:`routing.route.assign_tiers`)."""
    return np.searchsorted(np.asarray(thresholds, np.float64), np.asarray(scores), side="right")


def outcome(
    scores: npt.ArrayLike, quality: Floats, cost: Floats, thresholds: npt.ArrayLike
) -> Outcome:
    """The shares, quality and cost of routing with ``thresholds``."""
    q, c = np.asarray(quality, np.float64), np.asarray(cost, np.float64)
    n, tiers = q.shape
    idx = route_index(scores, thresholds)
    rows = np.arange(n)
    mean_q, top_q = float(q[rows, idx].mean()), float(q[:, -1].mean())
    spend, top = float(c[rows, idx].sum()), float(c[:, -1].sum())
    return Outcome(
        thresholds=tuple(float(t) for t in np.asarray(thresholds, np.float64)),
        shares=tuple(float(x) for x in np.bincount(idx, minlength=tiers) / n),
        quality=mean_q,
        quality_retained=mean_q / top_q if top_q else 1.0,
        cost_per_1k=spend / n * 1000,
        top_cost_per_1k=top / n * 1000,
        saving=1 - spend / top if top else 0.0,
    )


def calibrate(
    scores: npt.ArrayLike,
    quality: npt.ArrayLike,
    cost: npt.ArrayLike,
    target: Target,
    value: float,
    grid: int = 101,
) -> Outcome:
    """Thresholds meeting ``target`` (see the module doc); :class:`ConfigError` when no
    thresholds on the grid can, saying what the best reachable value is."""
    s = np.asarray(scores, np.float64)
    q, c = np.asarray(quality, np.float64), np.asarray(cost, np.float64)
    _check(s, q, c, target, value)
    n, tiers = q.shape
    if tiers == 1:
        return outcome(s, q, c, [])
    order = np.argsort(s, kind="stable")
    s, q, c = s[order], q[order], c[order]
    cuts = _cut_grid(s, grid, tiers - 1)
    combos = np.array(list(combinations_with_replacement(cuts, tiers - 1)), dtype=np.intp)
    combos = combos[_realizable(s, combos)]
    if combos.size == 0:
        raise ConfigError("calibrate: the scores leave no room for thresholds in [0, 1]")
    total_q, total_c, top = _totals(q, c, combos)
    if target == "max_top_share":
        ok = top <= value * n + 1e-9
        key = np.lexsort((total_c, -total_q))
    elif target == "min_quality":
        ok = total_q >= value * q[:, -1].sum() - 1e-9
        key = np.lexsort((-total_q, total_c))
    else:
        ok = total_c <= value * n / 1000 + 1e-12
        key = np.lexsort((total_c, -total_q))
    feasible = key[ok[key]]
    if feasible.size == 0:
        raise ConfigError(_infeasible(target, value, total_q, total_c, top, q, n))
    best = combos[feasible[0]]
    return outcome(s, q, c, _thresholds(s, best))


def _check(s: Floats, q: Floats, c: Floats, target: str, value: float) -> None:
    if q.ndim != 2 or q.shape != c.shape or q.shape[0] != s.shape[0]:
        raise ConfigError("calibrate: scores, quality and cost must describe the same prompts")
    if s.size == 0:
        raise ConfigError("calibrate: no labelled prompts")
    if not (np.isfinite(s).all() and np.isfinite(q).all() and np.isfinite(c).all()):
        raise ConfigError("calibrate: scores, quality and cost must be finite numbers")
    if target not in ("max_top_share", "min_quality", "max_cost_per_1k"):
        raise ConfigError(f"calibrate: unknown target {target!r}")
    if target != "max_cost_per_1k" and not 0 <= value <= 1:
        raise ConfigError(f"calibrate: {target} is a fraction in [0, 1], got {value}")
    if value < 0:
        raise ConfigError(f"calibrate: {target} must be ≥ 0, got {value}")


def _cut_grid(s: Floats, grid: int, free: int) -> Floats:
    """Candidate cut positions: where the sorted score changes, thinned to ≤ ``grid``
    quantiles, plus 0 and n. Coarsened until the combinations fit ``MAX_COMBINATIONS``."""
    n = s.size
    boundaries = np.concatenate(([0], np.flatnonzero(np.diff(s) > 0) + 1, [n]))
    while True:
        if boundaries.size > grid:
            pick = np.unique(np.round(np.linspace(0, boundaries.size - 1, grid)).astype(np.intp))
            cuts = boundaries[pick]
        else:
            cuts = boundaries
        if math.comb(cuts.size + free - 1, free) <= MAX_COMBINATIONS or grid <= 3:
            return cuts
        grid = max(3, grid // 2)


def _totals(q: Floats, c: Floats, combos: npt.NDArray[np.intp]) -> tuple[Floats, Floats, Floats]:
    """Summed quality, summed cost and prompts in the last tier of each cut combination."""
    n, tiers = q.shape
    pq = np.vstack([np.zeros(tiers), np.cumsum(q, axis=0)])
    pc = np.vstack([np.zeros(tiers), np.cumsum(c, axis=0)])
    bounds = np.column_stack([np.zeros(len(combos), np.intp), combos, np.full(len(combos), n)])
    total_q = np.zeros(len(combos))
    total_c = np.zeros(len(combos))
    for k in range(tiers):
        lo, hi = bounds[:, k], bounds[:, k + 1]
        total_q += pq[hi, k] - pq[lo, k]
        total_c += pc[hi, k] - pc[lo, k]
    return total_q, total_c, (n - bounds[:, -2]).astype(np.float64)


def _realizable(s: Floats, combos: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Cut combinations that strictly increasing thresholds in [0, 1] can express: a cut
    after every prompt needs a top score below 1, several cuts before every prompt a
    lowest score above 0."""
    n = s.size
    ok = np.ones(len(combos), dtype=bool)
    if s[-1] >= 1.0:
        ok &= ~(combos == n).any(axis=1)
    if s[0] <= 0.0:
        ok &= (combos == 0).sum(axis=1) <= 1
    return ok


def _thresholds(s: Floats, cuts: npt.NDArray[np.intp]) -> list[float]:
    """Thresholds for cut positions in the sorted scores. A prompt goes above a threshold
    ``t`` when its score is ≥ ``t``, so a cut at ``k`` needs ``s[k-1] < t ≤ s[k]``; ``m``
    cuts at one position are spread evenly over that interval (within [0, 1])."""
    n = s.size
    out: list[float] = []
    positions, counts = np.unique(cuts, return_counts=True)
    for k, m in zip(positions.tolist(), counts.tolist(), strict=True):
        hi = float(s[k]) if k < n else 1.0
        if k == 0:  # [0, s[0]]: the first threshold may be 0 itself
            out.extend(hi * j / max(m - 1, 1) if m > 1 else 0.0 for j in range(m))
        else:  # (s[k-1], hi]
            lo = float(s[k - 1])
            out.extend(lo + (hi - lo) * (j + 1) / m for j in range(m))
    return out


def _infeasible(
    target: str, value: float, total_q: Floats, total_c: Floats, top: Floats, q: Floats, n: int
) -> str:
    if target == "max_top_share":
        best = f"the smallest share to the last tier is {top.min() / n:.4f}"
    elif target == "min_quality":
        top_q = q[:, -1].sum()
        best = f"the most quality retained is {total_q.max() / top_q:.4f}" if top_q else ""
    else:
        best = f"the cheapest routing costs ${total_c.min() / n * 1000:.6f} per 1,000 prompts"
    return f"calibrate: no thresholds reach {target} = {value} on these prompts; {best}"
