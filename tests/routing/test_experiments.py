"""Experiments between threshold arms and the Thompson-sampling bandit (pure parts:
``routing.experiments``, ``routing.arms``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from routing.arms import arm_policy, route_arms, with_weights
from routing.classify import HeuristicScorer
from routing.errors import PolicyError
from routing.experiments import (
    ExperimentSpec,
    arm_label,
    arm_of,
    rewards,
    thompson_weights,
)
from routing.route import assign_tiers
from routing.router import route_batch
from tests import policies

ARMS = [
    {"name": "control", "weight": 3},
    {"name": "frugal", "weight": 1, "max_score": {"fast": 0.5, "balanced": 0.8}},
]


def experiment(**bandit: object) -> dict[str, object]:
    return {"name": "thr-1", "arms": ARMS, "bandit": bandit}


def test_arms_split_by_weight_and_are_stable() -> None:
    spec = ExperimentSpec.model_validate(experiment())
    arms = [arm_of(spec, f"prompt {i}") for i in range(8000)]
    share = Counter(arms)["frugal"] / len(arms)
    assert 0.23 < share < 0.27  # weight 1 of 4
    assert arms == [arm_of(spec, f"prompt {i}") for i in range(8000)]
    other = ExperimentSpec.model_validate({**experiment(), "name": "thr-2"})
    assert arms != [arm_of(other, f"prompt {i}") for i in range(8000)]  # another experiment


def test_bad_experiments_are_refused() -> None:
    for bad, message in (
        ({"name": "x", "arms": [ARMS[0]]}, "at least 2"),
        ({"name": "x", "arms": [ARMS[0], ARMS[0]]}, "unique names"),
        ({"name": "x", "arms": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]},
         "weight must be positive"),
        ({"name": "x", "arms": [ARMS[0], {"name": "b", "max_score": {"fast": 0.7}}]},
         "arm b: max_score must strictly increase"),
        ({"name": "x", "arms": [ARMS[0], {"name": "b", "max_score": {"expert": 0.7}}]},
         "unknown or last tiers"),
        ({"name": "../x", "arms": ARMS}, "name"),
        ({"name": "x", "arms": ARMS, "bandit": {"enabled": True, "floor": 0.6}}, "floor"),
    ):  # fmt: skip
        with pytest.raises(PolicyError, match=message):
            policies.build(experiment=bad)


def test_each_arm_routes_with_its_thresholds_in_input_order() -> None:
    policy = policies.build(experiment=experiment())
    assert policy.experiment is not None
    texts = [f"Explain case {i}: compare the two designs and derive costs." * (1 + i % 4)
             for i in range(200)]  # fmt: skip
    table = pa.table({"prompt_id": [f"p{i}" for i in range(200)], "prompt": texts})
    scorer = HeuristicScorer()
    out = route_arms(table, policy, scorer)
    assert out.column("prompt_id").to_pylist() == table.column("prompt_id").to_pylist()
    arms = out.column("arm").to_pylist()
    assert set(arms) == {arm_label(policy.experiment, "control"), "thr-1:frugal"}
    scores = np.array(out.column("complexity_score").to_pylist())
    for arm in policy.experiment.arms:
        mine = [i for i, a in enumerate(arms) if a == f"thr-1:{arm.name}"]
        tiers, _ = assign_tiers(scores[mine], arm_policy(policy, arm))
        assert [out.column("tier")[i].as_py() for i in mine] == tiers
    plain = route_batch(table, policies.build(), scorer)
    assert "arm" not in plain.column_names  # no experiment: route_batch exactly


def test_thompson_weights_favour_the_better_arm_within_the_floor() -> None:
    rng = np.random.default_rng(1)
    good, bad = rng.binomial(1, 0.8, 200).astype(float), rng.binomial(1, 0.5, 200).astype(float)
    w = thompson_weights({"a": good, "b": bad}, floor=0.1)
    assert w["a"] == pytest.approx(0.9, abs=0.01) and w["b"] == pytest.approx(0.1, abs=0.01)
    assert sum(w.values()) == pytest.approx(1.0)
    even = thompson_weights({"a": np.zeros(0), "b": np.zeros(0)}, floor=0.05)
    assert abs(even["a"] - 0.5) < 0.05  # no data: the prior, about even
    tie = thompson_weights({"a": good[:20], "b": good[:20].copy()}, floor=0.05)
    assert abs(tie["a"] - 0.5) < 0.05  # equal evidence: traffic stays even


def test_rewards_come_from_served_judged_answers_minus_cost() -> None:
    spec = ExperimentSpec.model_validate(experiment(cost_weight=10.0))
    labels = pl.DataFrame(
        {
            "arm": ["thr-1:control", "thr-1:control", "thr-1:frugal", None],
            "served": [True, False, True, True],
            "quality": [1.0, 0.0, 0.5, 1.0],
            "cost_usd": [0.0001, 0.0, 0.0, 0.0],
        }
    )
    r = rewards(labels, spec)
    assert r["control"].tolist() == pytest.approx([1.0 - 10 * 0.1])  # $0.1 per 1k prompts
    assert r["frugal"].tolist() == [0.5]
    assert [len(v) for v in rewards(pl.DataFrame(), spec).values()] == [0, 0]


def test_with_weights_sets_the_job_shares() -> None:
    policy = policies.build(experiment=experiment(enabled=True))
    changed = with_weights(policy, {"control": 0.2, "frugal": 0.8})
    assert changed.experiment is not None
    assert changed.experiment.weights() == pytest.approx([0.2, 0.8])
    assert changed.version != policy.version
