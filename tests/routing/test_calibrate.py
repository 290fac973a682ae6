"""Threshold calibration: the grid optimum equals an exhaustive search, every target is
respected, thresholds are what the router applies, infeasible targets say why."""

from __future__ import annotations

from itertools import combinations_with_replacement, pairwise

import numpy as np
import pytest

from routing.calibrate import calibrate, outcome, route_index
from routing.errors import ConfigError
from routing.policy import load_policy
from routing.route import assign_tiers


def _data(n: int = 60, tiers: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harder prompts (higher score) need stronger tiers; stronger tiers cost more."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(n), 2)  # ties on purpose
    need = np.minimum((scores * tiers + rng.normal(0, 0.4, n)).astype(int).clip(0), tiers - 1)
    quality = (np.arange(tiers)[None, :] >= need[:, None]).astype(np.float64)
    cost = np.array([1.0, 3.0, 10.0][:tiers])[None, :] * (1 + rng.random((n, 1)))
    return scores, quality, cost


def _exhaustive(scores, quality, cost, accept, better):  # type: ignore[no-untyped-def]
    """Every threshold tuple from the distinct cut points, scored with ``outcome``."""
    s = np.sort(np.unique(scores))
    candidates = [0.0, *((s[:-1] + s[1:]) / 2), min(1.0, s[-1] + 1e-6)]
    best = None
    for combo in combinations_with_replacement(candidates, quality.shape[1] - 1):
        o = outcome(scores, quality, cost, combo)
        if accept(o) and (best is None or better(o, best)):
            best = o
    return best


def test_min_quality_is_the_cheapest_exhaustive_answer() -> None:
    s, q, c = _data()
    got = calibrate(s, q, c, "min_quality", 0.9, grid=1000)
    ref = _exhaustive(
        s,
        q,
        c,
        lambda o: o.quality_retained >= 0.9 - 1e-12,
        lambda a, b: a.cost_per_1k < b.cost_per_1k,
    )
    assert got.quality_retained >= 0.9
    assert got.cost_per_1k == pytest.approx(ref.cost_per_1k)


def test_max_top_share_maximises_quality_under_the_cap() -> None:
    s, q, c = _data(seed=1)
    got = calibrate(s, q, c, "max_top_share", 0.2, grid=1000)
    ref = _exhaustive(
        s,
        q,
        c,
        lambda o: o.shares[-1] <= 0.2 + 1e-12,
        lambda a, b: (a.quality, -a.cost_per_1k) > (b.quality, -b.cost_per_1k),
    )
    assert got.shares[-1] <= 0.2
    assert got.quality == pytest.approx(ref.quality)
    assert got.cost_per_1k == pytest.approx(ref.cost_per_1k)


def test_max_cost_maximises_quality_under_the_budget() -> None:
    s, q, c = _data(seed=2)
    budget = outcome(s, q, c, [0.3, 0.7]).cost_per_1k
    got = calibrate(s, q, c, "max_cost_per_1k", budget, grid=1000)
    ref = _exhaustive(
        s,
        q,
        c,
        lambda o: o.cost_per_1k <= budget + 1e-9,
        lambda a, b: (a.quality, -a.cost_per_1k) > (b.quality, -b.cost_per_1k),
    )
    assert got.cost_per_1k <= budget + 1e-9
    assert got.quality == pytest.approx(ref.quality)


def test_thresholds_route_as_the_policy_does() -> None:
    s, q, c = _data(n=200, seed=3)
    got = calibrate(s, q, c, "min_quality", 0.8)
    ts = got.thresholds
    assert all(0 <= a < b <= 1 for a, b in pairwise(ts))
    policy = load_policy()
    data = policy.model_dump(mode="json")
    for tier, t in zip(data["tiers"][:-1], ts, strict=True):
        tier["max_score"] = t
    calibrated = type(policy).model_validate(data)
    tiers, _ = assign_tiers(s, calibrated)
    index = route_index(s, ts)
    assert [calibrated.tier_names[i] for i in index] == tiers
    shares = np.bincount(index, minlength=3) / len(s)
    assert tuple(shares) == pytest.approx(got.shares)


def test_all_quality_needed_sends_everything_up_when_it_must() -> None:
    s, q, c = _data(seed=4)
    got = calibrate(s, q, c, "min_quality", 1.0)
    assert got.quality_retained == pytest.approx(1.0)
    # quality 1.0 is reachable more cheaply than all-top whenever some prompt is easy
    assert got.cost_per_1k <= got.top_cost_per_1k


def test_two_tiers_and_one_tier() -> None:
    s, q, c = _data(tiers=2, seed=5)
    got = calibrate(s, q, c, "max_top_share", 0.5)
    assert len(got.thresholds) == 1 and got.shares[1] <= 0.5
    single = calibrate(s, q[:, :1], c[:, :1], "min_quality", 0.5)
    assert single.thresholds == () and single.shares == (1.0,)


def test_infeasible_targets_say_what_is_reachable() -> None:
    s, q, c = _data(seed=6)
    with pytest.raises(ConfigError, match="cheapest routing costs"):
        calibrate(s, q, c, "max_cost_per_1k", 0.0)
    # a prompt scored 1.0 goes to the last tier whatever the thresholds (they are ≤ 1)
    ones = np.ones_like(s)
    with pytest.raises(ConfigError, match=r"smallest share to the last tier is 1\.0"):
        calibrate(ones, q, c, "max_top_share", 0.5)


def test_scores_at_the_ends_of_the_range() -> None:
    s, q, c = _data(seed=7)
    s[:10], s[-10:] = 0.0, 1.0
    for target, value in (("min_quality", 0.9), ("max_top_share", 0.3)):
        got = calibrate(s, q, c, target, value)  # type: ignore[arg-type]
        ts = got.thresholds
        assert all(0 <= a < b <= 1 for a, b in pairwise(ts))
        again = outcome(s, q, c, ts)  # on the unsorted prompts, as a policy would route them
        assert got.shares == pytest.approx(again.shares)
        assert (got.quality, got.cost_per_1k) == pytest.approx((again.quality, again.cost_per_1k))


def test_bad_arguments() -> None:
    s, q, c = _data()
    with pytest.raises(ConfigError, match="fraction"):
        calibrate(s, q, c, "min_quality", 1.5)
    with pytest.raises(ConfigError, match="same prompts"):
        calibrate(s[:-1], q, c, "min_quality", 0.9)
    with pytest.raises(ConfigError, match="no labelled prompts"):
        calibrate(s[:0], q[:0], c[:0], "min_quality", 0.9)
    with pytest.raises(ConfigError, match="finite"):
        calibrate(np.full_like(s, np.nan), q, c, "min_quality", 0.9)
