"""The text of each row's ``route_reason`` (every move after the score's reason) and of its
``rejected_reason``, built once per group of rows that share it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from routing.enforcement.conditions import FOUND_PII, TOKENS
from routing.enforcement.steps import STEPS
from routing.rules import EntitlementsSpec, RuleSpec


def explain(
    data: pl.DataFrame,
    rules: Sequence[RuleSpec],
    matches: np.ndarray,
    tier_order: tuple[str, ...],
    start: np.ndarray,
    forced_by: np.ndarray,
    moves: list[tuple[np.ndarray, np.ndarray]],
    entitlements: EntitlementsSpec,
    pii_allowed: set[str] | frozenset[str],
    input_limits: Mapping[str, int] | None,
    score_reasons: Sequence[str] | None,
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Per row: ``tier``, ``route_reason`` and ``rejected_reason``. Rows that no rule
    touched keep the score's reason; the others are grouped by everything their reason
    depends on, and each group's text is built once (a million rows capped by the same
    entitlement cost one string, not a million)."""
    n, names = data.height, pl.Series(tier_order, dtype=pl.String)
    final = moves[-1][1]
    tier = names.gather(np.maximum(final, 0)).set(pl.Series(final < 0), None).alias("tier")
    if score_reasons is None:
        base = ("score → " + names.gather(start)).alias("route_reason")
    elif len(score_reasons) == n:
        base = pl.Series("route_reason", score_reasons, pl.String)
    else:
        raise ValueError(f"{len(score_reasons)} score reasons for {n} rows")
    rejected = pl.Series("rejected_reason", [None] * n, pl.String)
    moved = forced_by >= 0
    for before, after in moves:
        moved |= before != after
    touched = np.flatnonzero(moved)
    if not len(touched):
        return tier, base, rejected
    ctx = _Context(data, rules, matches, tier_order, entitlements, pii_allowed, input_limits)
    groups = (
        _signature(data, matches, forced_by, moves, touched)
        .with_row_index("__row")
        .group_by(pl.exclude("__row"))
        .agg(pl.col("__row"))
        .get_column("__row")
    )
    texts = [ctx.describe(int(touched[rows[0]]), forced_by, moves) for rows in groups]
    per_row = (
        pl.DataFrame(
            {
                "__row": groups,
                "text": [t for t, _ in texts],
                "why": [r for _, r in texts],
            },
            schema={"__row": groups.dtype, "text": pl.String, "why": pl.String},
        )
        .explode("__row")
        .sort("__row")
    )
    text, why = per_row.get_column("text"), per_row.get_column("why")
    forced = pl.Series(forced_by[touched] >= 0)
    head = base.gather(touched)
    reasons = pl.select(pl.when(forced).then(text).otherwise(head + "; " + text)).to_series()
    index = pl.Series(touched)
    return tier, base.scatter(index, reasons), rejected.scatter(index, why)


def _signature(
    data: pl.DataFrame,
    matches: np.ndarray,
    forced_by: np.ndarray,
    moves: list[tuple[np.ndarray, np.ndarray]],
    rows: np.ndarray,
) -> pl.DataFrame:
    """One row per touched row: everything its reason text depends on."""
    fit_before, fit_after = moves[-1]
    tokens = (
        data.get_column(TOKENS).gather(rows).fill_null(-1).to_numpy()
        if TOKENS in data.columns
        else np.zeros(len(rows), np.int64)
    )
    states = [moves[0][0], *(after for _, after in moves)]
    columns: dict[str, Any] = {
        "customer": data.get_column("customer_tier").gather(rows),
        "pii": data.get_column(FOUND_PII).gather(rows).list.join(","),
        "forced_by": forced_by[rows],
        "fit_tokens": np.where(fit_before[rows] != fit_after[rows], tokens, 0),
        **{f"state{i}": state[rows] for i, state in enumerate(states)},
        **{f"rules{i}": bits for i, bits in enumerate(np.packbits(matches[:, rows], axis=0))},
    }
    return pl.DataFrame(columns)


class _Context:
    """Reason text for one row's moves."""

    def __init__(
        self,
        data: pl.DataFrame,
        rules: Sequence[RuleSpec],
        matches: np.ndarray,
        tier_order: tuple[str, ...],
        entitlements: EntitlementsSpec,
        pii_allowed: set[str] | frozenset[str],
        input_limits: Mapping[str, int] | None,
    ) -> None:
        self.rules, self.matches, self.order = rules, matches, tier_order
        self.entitlements, self.pii_allowed, self.limits = entitlements, pii_allowed, input_limits
        self.customer = data.get_column("customer_tier")
        self.pii = data.get_column(FOUND_PII)
        self.tokens = data.get_column(TOKENS) if TOKENS in data.columns else None

    def describe(
        self, row: int, forced_by: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[str, str | None]:
        """The row's reason after the score's (or the forcing rule's), and its rejection."""
        parts, rejected = [], None
        if forced_by[row] >= 0:
            parts.append(
                f"rule {self.rules[forced_by[row]].id}: force {self.order[moves[0][0][row]]}"
            )
        for step, (before, after) in enumerate(moves):
            if before[row] == after[row]:
                continue
            cause = self.cause(STEPS[step], row, int(before[row]))
            new = "rejected" if after[row] < 0 else self.order[after[row]]
            parts.append(f"{cause}: {self.order[before[row]]} → {new}")
            if after[row] < 0:
                rejected = self.rejection(STEPS[step], row, cause)
        return "; ".join(parts), rejected

    def _matching(self, row: int) -> list[RuleSpec]:
        return [r for i, r in enumerate(self.rules) if self.matches[i, row]]

    def cause(self, step: str, row: int, tier: int) -> str:
        name = self.order[tier]
        if step == "floor":
            floors = [r for r in self._matching(row) if r.then.floor is not None]
            highest = max(floors, key=lambda r: self.order.index(r.then.floor or ""))
            return f"floor by rule {highest.id}"
        if step == "forbid":
            ids = [r.id for r in self._matching(row) if name in r.then.forbid]
            return f"forbidden by rule {', '.join(ids)}"
        if step == "cap":
            caps = [r for r in self._matching(row) if r.then.cap is not None]
            lowest = min(caps, key=lambda r: self.order.index(r.then.cap or ""))
            return f"capped by rule {lowest.id}"
        if step == "gaming":
            return "capped by gaming flag"
        if step == "entitlement":
            customer = self.customer[row]
            top = self.entitlements.max_tier.get(customer, self.entitlements.default)
            return f"capped by entitlement {customer or '(none)'}→{top}"
        if step == "pii":
            return f"pii({', '.join(self.pii[row])})"
        tokens = "?" if self.tokens is None else str(self.tokens[row])
        return f"{tokens} input tokens > {name}.max_input_tokens {(self.limits or {}).get(name)}"

    def rejection(self, step: str, row: int, cause: str) -> str:
        if step == "pii":
            allowed = ", ".join(t for t in self.order if t in self.pii_allowed) or "none"
            return (
                f"prompt contains PII ({', '.join(self.pii[row])}) and no pii_allowed tier "
                f"is allowed for it (pii_allowed tiers: {allowed})"
            )
        if step == "fit":
            return f"prompt fits no allowed tier's max_input_tokens ({cause})"
        return f"no tier is allowed: {cause}, and every other tier is forbidden or above a cap"
