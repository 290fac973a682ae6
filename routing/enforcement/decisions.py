"""Policy rules, entitlements and the PII constraint applied to a batch: where each row may go.

The score proposes a tier; this module decides, per row, where the prompt may go.
Resolution order (each step narrows the set of allowed tiers; tiers are ordered
cheapest first)::

    desired   the first matching rule with ``force`` (file order), else the score's tier
              raised to the highest ``floor`` of the matching rules
    1 forbid  minus the ``forbid`` tiers of every matching rule
    2 cap     at most the lowest ``cap`` of the matching rules
    2b gaming at most ``gaming.cap`` for a prompt routing.gaming flagged (optional)
    3 entitle at most the customer tier's entitlement (``entitlements``), never exceeded
    4 pii     a prompt with PII: only ``pii_allowed`` tiers
    5 fit     (optional) only tiers whose ``max_input_tokens`` the prompt fits

After each step, if the current tier is no longer allowed, the prompt moves to the
nearest allowed tier *cheaper* than it, else to the nearest allowed dearer one (still
within every cap: caps are part of the allowed set). When nothing is allowed, the row is
rejected with a reason naming the step (e.g. the PII kinds). The allowed set is the
intersection of all steps, so the outcome never breaks a cap, an entitlement, a
``forbid`` or the PII constraint, whatever the order of moves; the order only shapes
the ``route_reason``, which lists every move after the score's reason (or the forcing
rule): ``rule legal: force expert; capped by entitlement free→fast: expert → fast``,
``score 0.712 ≥ 0.60 → expert; pii(email): expert → onprem``.

(The rules themselves, and what they may read: :mod:`routing.rules`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from routing.enforcement.conditions import prepare, rule_matches
from routing.enforcement.reasons import explain
from routing.enforcement.steps import (
    STEPS,
    floor_tiers,
    forced_tiers,
    gaming_mask,
    nearest,
    step_masks,
)
from routing.rules import EntitlementsSpec, RuleSpec


@dataclass(frozen=True)
class Decisions:
    """Per row: ``tier`` (null: rejected), ``route_reason`` (why it went there) and
    ``rejected_reason`` (null unless rejected), as polars String series; ``allowed``: the
    tiers every constraint permits, as an Int64 bit mask (bit k = the k-th tier, cheapest
    first) — where dispatch may move a prompt later (budget downgrade, fallback)."""

    tier: pl.Series
    route_reason: pl.Series
    rejected_reason: pl.Series
    allowed: pl.Series | None = None

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame([self.tier, self.route_reason, self.rejected_reason])


def apply_rules(
    frame: pl.DataFrame,
    score_tiers: Sequence[str] | pl.Series,
    tier_order: tuple[str, ...],
    rules: Sequence[RuleSpec],
    entitlements: EntitlementsSpec,
    pii_allowed: set[str] | frozenset[str],
    pii_kinds: Sequence[Sequence[str]] | pl.Series | None,
    *,
    score_reasons: Sequence[str] | None = None,
    input_limits: Mapping[str, int] | None = None,
    flagged_cap: tuple[np.ndarray, str] | None = None,
) -> Decisions:
    """Resolve every row of ``frame`` to a tier or a rejection (see the module docstring).

    ``frame``: ``prompt`` (for char conditions), ``input_tokens`` (for token conditions
    and ``input_limits``), optional ``domain``, ``customer_tier``, ``tenant``, ``metadata``.
    ``score_tiers``: the tier the score chose per row. ``pii_kinds``: the PII kinds found
    per row (None: PII not checked). ``pii_allowed``: tiers that may receive PII.
    ``score_reasons``: the score's route reason per row (default ``score → <tier>``).
    ``input_limits``: tier → max input tokens, as a last constraint (step ``fit``).
    ``flagged_cap``: (rows flagged by routing.gaming, the tier they are capped at), as
    the step ``gaming`` after the rules' caps.
    """
    n, order = frame.height, {name: i for i, name in enumerate(tier_order)}
    scored = pl.Series(score_tiers, dtype=pl.String)
    if len(scored) != n:
        raise ValueError(f"{len(scored)} score tiers for {n} rows")
    unknown = set(scored.unique().to_list()) - set(order)
    if unknown:
        raise ValueError(f"score tiers {sorted(unknown, key=str)} not in {tier_order}")
    data = prepare(frame, pii_kinds)
    matches = rule_matches(data, rules)
    start = scored.replace_strict(order, return_dtype=pl.Int64).to_numpy()
    forced, forced_by = forced_tiers(matches, rules, order, n)
    desired = np.where(forced >= 0, forced, start)
    current = np.where(
        forced >= 0, desired, np.maximum(desired, floor_tiers(matches, rules, order))
    )
    moves = [(desired, current)]  # one (before, after) per step of STEPS
    masks = step_masks(data, matches, rules, entitlements, pii_allowed, input_limits, order)
    masks.insert(STEPS.index("gaming") - 1, gaming_mask(flagged_cap, order, n))
    allowed = np.ones((n, len(tier_order)), dtype=np.bool_)
    for mask in masks:
        before = current
        if mask is not None:
            allowed &= mask
            current = nearest(allowed, current)
        moves.append((before, current))
    tier, route_reason, rejected_reason = explain(
        data, rules, matches, tier_order, start, forced_by, moves,
        entitlements, pii_allowed, input_limits, score_reasons,
    )  # fmt: skip
    bits = allowed.astype(np.int64) @ (np.int64(1) << np.arange(len(tier_order), dtype=np.int64))
    return Decisions(
        tier, route_reason, rejected_reason, pl.Series("allowed", bits, dtype=pl.Int64)
    )
