"""The resolution steps (:data:`STEPS`): the tier the matching rules ask for (``force``,
``floor``), the tiers each later step allows per row, and the move to the nearest allowed
tier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from routing.enforcement.conditions import FOUND_PII, TOKENS
from routing.rules import EntitlementsSpec, RuleSpec

STEPS = ("floor", "forbid", "cap", "gaming", "entitlement", "pii", "fit")


def forced_tiers(
    matches: np.ndarray, rules: Sequence[RuleSpec], order: Mapping[str, int], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The tier of the first matching rule that forces one (-1: none), and that rule."""
    forced, by = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    for i, rule in enumerate(rules):
        if rule.then.force is None:
            continue
        take = matches[i] & (by < 0)
        forced[take], by[take] = order[rule.then.force], i
    return forced, by


def floor_tiers(
    matches: np.ndarray, rules: Sequence[RuleSpec], order: Mapping[str, int]
) -> np.ndarray:
    """The highest ``floor`` of the matching rules per row (-1: none)."""
    floor = np.full(matches.shape[1], -1, np.int64)
    for i, rule in enumerate(rules):
        if rule.then.floor is not None:
            floor = np.where(matches[i], np.maximum(floor, order[rule.then.floor]), floor)
    return floor


def step_masks(
    data: pl.DataFrame,
    matches: np.ndarray,
    rules: Sequence[RuleSpec],
    entitlements: EntitlementsSpec,
    pii_allowed: set[str] | frozenset[str],
    input_limits: Mapping[str, int] | None,
    order: Mapping[str, int],
) -> list[np.ndarray | None]:
    """Per step of :data:`STEPS`, rows × tiers: which tiers that step allows (None: all)."""
    n, width = data.height, len(order)
    index = np.arange(width)
    forbid = np.ones((n, width), dtype=np.bool_)
    cap = np.full(n, width - 1, np.int64)
    for i, rule in enumerate(rules):
        for name in rule.then.forbid:
            forbid[matches[i], order[name]] = False
        if rule.then.cap is not None:
            cap = np.where(matches[i], np.minimum(cap, order[rule.then.cap]), cap)
    entitled = _entitled(data, entitlements, order)
    has_pii = data.get_column(FOUND_PII).list.len().to_numpy() > 0
    pii = np.ones((n, width), dtype=np.bool_)
    pii[has_pii] = np.isin(index, [order[t] for t in pii_allowed if t in order])
    fit = None
    if input_limits is not None:
        limits = np.array([input_limits.get(t, np.iinfo(np.int64).max) for t in order])
        fit = data.get_column(TOKENS).fill_null(0).to_numpy()[:, None] <= limits[None, :]
    return [
        forbid if rules else None,
        index[None, :] <= cap[:, None] if rules else None,
        index[None, :] <= entitled[:, None],
        pii if has_pii.any() else None,
        fit,
    ]


def gaming_mask(
    flagged_cap: tuple[np.ndarray, str] | None, order: Mapping[str, int], n: int
) -> np.ndarray | None:
    """Rows × tiers: a flagged row may use tiers up to the gaming cap (None: no row)."""
    if flagged_cap is None or not flagged_cap[0].any():
        return None
    flagged, cap = flagged_cap
    if len(flagged) != n:
        raise ValueError(f"{len(flagged)} gaming flags for {n} rows")
    mask = np.ones((n, len(order)), dtype=np.bool_)
    mask[flagged] = np.arange(len(order)) <= order[cap]
    return mask


def _entitled(
    data: pl.DataFrame, entitlements: EntitlementsSpec, order: Mapping[str, int]
) -> np.ndarray:
    """The highest tier index each row's customer tier may use."""
    top = len(order) - 1
    default = order[entitlements.default] if entitlements.default is not None else top
    mapping = {k: order[v] for k, v in entitlements.max_tier.items()}
    return (
        data.get_column("customer_tier")
        .replace_strict(mapping, default=default, return_dtype=pl.Int64)
        .fill_null(default)
        .to_numpy()
    )


def nearest(allowed: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Keep each row's tier if allowed; else the nearest allowed cheaper tier; else the
    nearest allowed dearer one; else -1 (rejected). Rejected rows stay rejected."""
    live = np.flatnonzero(current >= 0)
    bad = live[~allowed[live, current[live]]]
    if not len(bad):
        return current
    width = allowed.shape[1]
    index, cur, ok = np.arange(width)[None, :], current[bad, None], allowed[bad]
    below = np.where(ok & (index <= cur), index, -1).max(axis=1)
    above = np.where(ok & (index > cur), index, width).min(axis=1)
    result = current.copy()
    result[bad] = np.where(below >= 0, below, np.where(above < width, above, -1))
    return result
