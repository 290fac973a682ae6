"""Online experiments between threshold arms, and the bandit that moves traffic between
them (pure; issue 16, ``docs/policy.md#experiment``).

``experiment:`` in the policy names arms; each arm is a set of score thresholds
(``max_score`` per tier, the policy's where omitted) and a traffic ``weight``. A prompt's
arm is a stable hash of the experiment's name and the prompt text (:func:`arm_of`): the same
text is in the same arm in every job (so exact duplicates share an arm) until the weights
change. Each arm routes its rows with its own thresholds (:func:`arm_policy`); every rule,
entitlement, PII and input-limit constraint holds as for any row. The result column ``arm``
names it, the cost rollup groups by it and, with exploration on, the judged labels carry
it — which is what ``batch-router report`` shows per arm and what the bandit learns from.

**The bandit** (``bandit: {enabled: true, floor: 0.1, cost_weight: 0, window_days: 7}``):
when a job is planned, each arm's judged outcomes of the last ``window_days`` (the served
answer's grade, minus ``cost_weight`` × its cost in USD per 1,000 prompts) give a normal
posterior of its mean reward; Thompson sampling estimates P(arm is best)
(:func:`thompson_weights`) and the job's weights are those probabilities, each at least
``floor``. A row's ``arm`` is ``<experiment>:<arm>``. The job's policy copy holds the
weights it ran with (``_job/policy.yaml``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from routing.frozen import Frozen

MIN_JUDGED = 2  # judged outcomes an arm needs before its posterior is more than the prior


class ArmSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    weight: float = Field(1.0, ge=0)
    max_score: dict[str, float] = Field(default_factory=dict)  # tier → threshold override


class BanditSpec(Frozen):
    enabled: bool = False
    floor: float = Field(0.05, ge=0, le=0.5)  # every arm keeps at least this share
    cost_weight: float = Field(0.0, ge=0)  # reward = grade − cost_weight × USD per 1k prompts
    window_days: int = Field(7, ge=1, le=366)
    draws: int = Field(4000, ge=100, le=100_000)


class ExperimentSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    arms: tuple[ArmSpec, ...] = Field(min_length=2)
    bandit: BanditSpec = BanditSpec()

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment arms must have unique names: {names}")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError("experiment arms: at least one weight must be positive")
        if self.bandit.enabled and self.bandit.floor * len(self.arms) > 1:
            raise ValueError("bandit.floor × arms must be at most 1")
        return self

    def weights(self) -> list[float]:
        total = sum(a.weight for a in self.arms)
        return [a.weight / total for a in self.arms]


def _unit(name: str, text: str) -> float:
    digest = hashlib.blake2b(
        f"{name}\x1f{text}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53


def arm_of(spec: ExperimentSpec, text: str) -> str:
    """The arm of a prompt: its hash's place among the arms' cumulative weights."""
    u, edge = _unit(spec.name, text), 0.0
    for arm, w in zip(spec.arms, spec.weights(), strict=True):
        edge += w
        if u < edge:
            return arm.name
    return spec.arms[-1].name


def arm_label(spec: ExperimentSpec, arm: str) -> str:
    """The ``arm`` value of a row: ``<experiment>:<arm>`` (an arm name alone is ambiguous
    across experiments)."""
    return f"{spec.name}:{arm}"


def arms_of(spec: ExperimentSpec, texts: Sequence[str | None]) -> list[str]:
    return [arm_of(spec, t or "") for t in texts]


def check_arms(spec: ExperimentSpec, names: Sequence[str], thresholds: Sequence[float]) -> None:
    """ValueError unless every arm's thresholds name tiers that have one (all but the last)
    and, merged with the policy's (``thresholds``, cheapest first), strictly increase."""
    for arm in spec.arms:
        unknown = sorted(set(arm.max_score) - set(names[:-1]))
        if unknown:
            raise ValueError(f"arm {arm.name}: max_score for unknown or last tiers {unknown}")
        merged = [arm.max_score.get(n, t) for n, t in zip(names[:-1], thresholds, strict=True)]
        if any(a >= b for a, b in pairwise(merged)):
            raise ValueError(
                f"experiment arm {arm.name}: max_score must strictly increase with the tier "
                f"order: {merged}"
            )


# ---------------------------------------------------------------- the bandit


def rewards(labels: pl.DataFrame, spec: ExperimentSpec) -> dict[str, np.ndarray]:
    """Per arm, the rewards of its judged served answers (labels with ``served`` true and
    the arm recorded): grade − cost_weight × cost in USD per 1,000 prompts."""
    out = {a.name: np.zeros(0) for a in spec.arms}
    if labels.height == 0 or not {"arm", "served"} <= set(labels.columns):
        return out
    served = labels.filter(pl.col("served").fill_null(False) & pl.col("arm").is_not_null())
    reward = pl.col("quality") - spec.bandit.cost_weight * pl.col("cost_usd") * 1000
    for arm in spec.arms:
        mine = served.filter(pl.col("arm") == arm_label(spec, arm.name))
        out[arm.name] = mine.select(reward).to_series().to_numpy()
    return out


def thompson_weights(
    rewards_by_arm: Mapping[str, np.ndarray], floor: float, draws: int = 4000, seed: int = 0
) -> dict[str, float]:
    """P(arm has the highest mean reward) under a normal posterior per arm (mean of its
    rewards, standard error with a pooled variance when it has few), Monte Carlo over
    ``draws``; then each arm lifted to at least ``floor`` and the rest scaled to sum 1. An
    arm with fewer than :data:`MIN_JUDGED` outcomes gets a wide prior (mean of all, sd 1)."""
    names = list(rewards_by_arm)
    pooled = np.concatenate([r for r in rewards_by_arm.values() if len(r)] or [np.zeros(0)])
    prior_mean = float(pooled.mean()) if len(pooled) else 0.5
    prior_var = float(pooled.var()) if len(pooled) > 1 else 0.25
    means, sds = [], []
    for name in names:
        r = rewards_by_arm[name]
        if len(r) < MIN_JUDGED:
            means.append(prior_mean)
            sds.append(1.0)
            continue
        var = (float(r.var(ddof=1)) * (len(r) - 1) + prior_var) / len(r)  # shrunk to the pool
        means.append(float(r.mean()))
        sds.append(float(np.sqrt(max(var, 1e-12) / len(r))))
    rng = np.random.default_rng(seed)
    samples = rng.normal(np.array(means), np.array(sds), size=(draws, len(names)))
    best = np.bincount(samples.argmax(axis=1), minlength=len(names)) / draws
    lifted = np.maximum(best, floor)
    spare = 1.0 - floor * len(names)
    above = lifted - floor
    share = (
        above / above.sum() * spare if above.sum() > 0 else np.full(len(names), spare / len(names))
    )
    return {n: float(floor + s) for n, s in zip(names, share, strict=True)}
