"""One operating point of a router: quality, cost, PGR, regret and its confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from routing.evaluation.curve import Curve
from routing.evaluation.labels import Pair, adequacy
from routing.evaluation.metrics import pgr


@dataclass(frozen=True)
class Confusion:
    """Routing confusion matrix: rows the cheapest adequate model, columns the one chosen.

    Counts are expected values (fractional inside a tie group cut by the operating point).
    ``no_adequate`` prompts (neither model adequate) are in the "weak" row.
    """

    weak_to_weak: float
    weak_to_strong: float  # money wasted: the weak model was enough
    strong_to_weak: float  # quality lost: only the strong model was adequate
    strong_to_strong: float
    no_adequate: int


@dataclass(frozen=True)
class Decision:
    """A router at one operating point."""

    strong_share: float
    quality: float
    cost: float  # mean USD per prompt
    cost_ratio: float  # cost / all-strong cost
    pgr: float | None
    regret: float  # oracle's best quality at this cost minus this quality
    confusion: Confusion


def decide(pair: Pair, p_strong: npt.ArrayLike, oracle: Curve, threshold: float | None) -> Decision:
    """Evaluate one routing decision, ``p_strong`` = P(strong) per prompt (0/1, or expected).

    Regret is the quality lost against the oracle *at the same cost*: the best mean quality
    on the oracle's frontier (its running maximum, interpolated) at this decision's mean
    cost, minus this decision's quality; 0 for a perfect router.
    """
    p = np.asarray(p_strong, dtype=np.float64)
    quality = float(np.mean(pair.q_weak + p * (pair.q_strong - pair.q_weak)))
    cost = float(np.mean(pair.c_weak + p * (pair.c_strong - pair.c_weak)))
    weak_ok, strong_ok = adequacy(pair, threshold)
    need = ~weak_ok & strong_ok
    by_cost = np.argsort(oracle.cost, kind="stable")
    best = float(
        np.interp(cost, oracle.cost[by_cost], np.maximum.accumulate(oracle.quality[by_cost]))
    )
    all_strong = float(pair.c_strong.mean())
    gain = pgr(pair, [quality])[0]
    return Decision(
        strong_share=float(p.mean()) if pair.n else 0.0,
        quality=quality,
        cost=cost,
        cost_ratio=cost / all_strong if all_strong > 0 else float("nan"),
        pgr=None if np.isnan(gain) else float(gain),
        regret=0.0 if abs(best - quality) < 1e-9 else best - quality,
        confusion=Confusion(
            weak_to_weak=float(((1 - p) * ~need).sum()),
            weak_to_strong=float((p * ~need).sum()),
            strong_to_weak=float(((1 - p) * need).sum()),
            strong_to_strong=float((p * need).sum()),
            no_adequate=int((~weak_ok & ~strong_ok).sum()),
        ),
    )
