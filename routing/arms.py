"""Routing a batch under an experiment (``routing/experiments.py``): each arm's rows are
routed with the arm's thresholds, and the ``arm`` column says which (pure)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from routing.classify import Scorer
from routing.decision_memo import DecisionMemo
from routing.experiments import ArmSpec, arm_label, arms_of
from routing.memo import TextMemo
from routing.policy import Policy
from routing.router import route_batch

ARM = "arm"


def arm_policy(policy: Policy, arm: ArmSpec) -> Policy:
    """``policy`` with the arm's thresholds (validated like any policy: ValueError)."""
    unknown = sorted(set(arm.max_score) - set(policy.tier_names[:-1]))
    if unknown:
        raise ValueError(f"arm {arm.name}: max_score for unknown or last tiers {unknown}")
    tiers = [
        t.model_copy(update={"max_score": arm.max_score[t.name]}) if t.name in arm.max_score else t
        for t in policy.tiers
    ]
    data = policy.model_dump() | {"tiers": [t.model_dump() for t in tiers], "experiment": None}
    try:
        return type(policy).model_validate(data)
    except ValidationError as exc:  # say which arm, and what is wrong with it
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"experiment arm {arm.name}: {why}") from None


def with_weights(policy: Policy, weights: Mapping[str, float]) -> Policy:
    """``policy`` with its experiment's arm weights replaced (the bandit's, for one job)."""
    spec = policy.experiment
    assert spec is not None
    arms = tuple(a.model_copy(update={"weight": round(weights[a.name], 6)}) for a in spec.arms)
    return policy.model_copy(update={"experiment": spec.model_copy(update={"arms": arms})})


def route_arms(
    table: pa.Table,
    policy: Policy,
    scorer: Scorer,
    *,
    memo: TextMemo | None = None,
    decisions: DecisionMemo | None = None,
) -> pa.Table:
    """:func:`routing.router.route_batch`, per arm when the policy runs an experiment (the
    rows in their input order, with ``arm`` = ``<experiment>:<arm>``, and ``; arm <label>``
    at the end of ``route_reason`` — what the audit trail records of the decision); without
    one, exactly ``route_batch``."""
    spec = policy.experiment
    if spec is None or table.num_rows == 0:
        return route_batch(table, policy, scorer, memo=memo, decisions=decisions)
    arms = np.array(arms_of(spec, table.column("prompt").to_pylist()), dtype=object)
    parts, order = [], []
    for arm in spec.arms:
        idx = np.flatnonzero(arms == arm.name)
        if len(idx) == 0:
            continue
        routed = route_batch(
            table.take(idx), arm_policy(policy, arm), scorer, memo=memo, decisions=decisions
        )
        label = arm_label(spec, arm.name)
        reason = routed.column("route_reason")  # the arm is part of the decision (and audit)
        tagged = pc.binary_join_element_wise(reason, pa.scalar(f"arm {label}"), "; ")
        routed = routed.set_column(
            routed.column_names.index("route_reason"), "route_reason", tagged
        )
        parts.append(routed.append_column(ARM, pa.array([label] * len(idx), pa.string())))
        order.append(idx)
    out = pa.concat_tables(parts, promote_options="permissive")
    inverse = np.empty(table.num_rows, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(table.num_rows)
    return out.take(inverse)
