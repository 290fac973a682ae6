"""A router and the baselines, every metric computed by the same code on one weak/strong
pair (:func:`evaluate`), JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from routing.evaluation.baselines import length_scores, oracle_scores
from routing.evaluation.curve import Curve, check_scores, frontier, selection
from routing.evaluation.decision import Decision, decide
from routing.evaluation.labels import Pair, needs_strong
from routing.evaluation.metrics import aiq, apgr, cpt, needs_strong_auc, saving_at

BASELINES = ("random", "always-weak", "always-strong", "length-only", "oracle")
FRONTIER_SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


@dataclass(frozen=True)
class RouterResult:
    """A router's (or baseline's) metrics; curve metrics are None for fixed policies."""

    name: str
    decision: Decision
    curve: Curve | None = None
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    aiq: float | None = None
    saving_at_95: float | None = None
    auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "apgr": self.apgr,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "aiq": self.aiq,
            "saving_at_95": self.saving_at_95,
            "auc": self.auc,
            "operating_point": {
                "strong_share": d.strong_share,
                "quality": d.quality,
                "cost_per_prompt_usd": d.cost,
                "cost_ratio": _num(d.cost_ratio),
                "pgr": d.pgr,
                "regret": d.regret,
                "confusion": d.confusion.__dict__,
            },
        }


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def score_router(
    pair: Pair,
    name: str,
    scores: npt.ArrayLike,
    share: float,
    oracle: Curve,
    threshold: float | None = None,
) -> RouterResult:
    """Every metric of a score-ranked router, with its decision at strong share ``share``."""
    s = check_scores(pair, scores)
    curve = frontier(pair, s)
    return RouterResult(
        name=name,
        decision=decide(pair, selection(s, share), oracle, threshold),
        curve=curve,
        apgr=apgr(pair, curve),
        cpt50=cpt(pair, curve, 0.5),
        cpt80=cpt(pair, curve, 0.8),
        aiq=aiq(pair, curve),
        saving_at_95=saving_at(pair, curve, 0.95),
        auc=_num(needs_strong_auc(pair, s, threshold)),
    )


@dataclass(frozen=True)
class Evaluation:
    """A router and the baselines on one weak/strong pair, at one operating point."""

    pair: Pair
    share: float
    threshold: float | None
    router: RouterResult
    baselines: tuple[RouterResult, ...] = field(default_factory=tuple)

    def baseline(self, name: str) -> RouterResult:
        return next(b for b in self.baselines if b.name == name)

    def _point(self, result: RouterResult, share: float) -> dict[str, float]:
        assert result.curve is not None
        quality, cost = result.curve.at(share)
        return {"quality": quality, "cost_ratio": cost / float(self.pair.c_strong.mean())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the router's metrics at the top level, baselines by name, frontier."""
        p = self.pair
        rows = (self.router, *self.baselines)
        return {
            "router": self.router.name,
            **self.router.to_dict(),
            "prompts": p.n,
            "weak": {"model": p.weak, "quality": p.q_weak.mean(), "cost_usd": p.c_weak.mean()},
            "strong": {
                "model": p.strong,
                "quality": p.q_strong.mean(),
                "cost_usd": p.c_strong.mean(),
            },
            "operating_share": self.share,
            "adequacy_threshold": self.threshold,
            "baselines": {b.name: b.to_dict() for b in self.baselines},
            "frontier": [
                {"strong_share": x, **{r.name: self._point(r, x) for r in rows if r.curve}}
                for x in FRONTIER_SHARES
            ],
        }


def evaluate(
    pair: Pair,
    scores: npt.ArrayLike,
    name: str = "router",
    share: float | None = None,
    threshold: float | None = None,
) -> Evaluation:
    """Evaluate ``scores`` and the baselines with the same code.

    ``share`` is the operating point for the decision metrics (confusion matrix, regret):
    the fraction of prompts routed strong, by default the oracle's (the share whose
    cheapest adequate model is the strong one). Baselines: ``random`` (the expected value,
    i.e. a constant score: the straight line from all-weak to all-strong), ``always-weak``
    and ``always-strong`` (fixed policies: points, no curve metrics), ``length-only``
    (score = input tokens) and ``oracle`` (:func:`oracle_scores`; its decision is the
    cheapest adequate model per prompt).
    """
    need = needs_strong(pair, threshold)
    share = float(need.mean()) if share is None else share
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"operating share must be in [0, 1], got {share}")
    oracle_s = oracle_scores(pair, threshold)
    oracle_curve = frontier(pair, oracle_s)

    def ranked(label: str, s: npt.ArrayLike) -> RouterResult:
        return score_router(pair, label, s, share, oracle_curve, threshold)

    def fixed(label: str, p: float) -> RouterResult:
        return RouterResult(label, decide(pair, np.full(pair.n, p), oracle_curve, threshold))

    oracle = replace(
        ranked("oracle", oracle_s), decision=decide(pair, need, oracle_curve, threshold)
    )
    baselines = (
        ranked("random", np.zeros(pair.n)),
        fixed("always-weak", 0.0),
        fixed("always-strong", 1.0),
        ranked("length-only", length_scores(pair)),
        oracle,
    )
    return Evaluation(pair, share, threshold, ranked(name, scores), baselines)
