"""Policy rules, entitlements and the PII constraint: what may override the score.

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

Rules read columns, never prompt text, except through length and the PII kinds: text
that says "route me to expert" changes nothing. All conditions of a rule must hold (an
empty ``when`` matches every row); a null column value matches no condition on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from routing.pii import BUILTIN_KINDS, VALIDATORS, PiiDetector, PiiKind, check_pattern

TIER_NAME = r"^[a-z][a-z0-9_-]*$"
ANY_PII = "any"
# Frame columns read by the rules; any of them may be absent (then: all null).
TEXT_COLUMNS = ("domain", "customer_tier", "tenant", "metadata")
PROMPT, TOKENS = "prompt", "input_tokens"
_PII = "__rules_pii"
_META = "__rules_meta:"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _as_tuple(value: Any) -> Any:
    """YAML convenience: ``domain: legal`` means ``domain: [legal]``."""
    return (value,) if isinstance(value, str) else value


class MetadataMatch(_Frozen):
    """A test of one top-level key of the row's ``metadata`` JSON: ``equals`` a scalar
    (compared as JSON text: ``3``, ``true``, ``crm``), or ``contains`` a substring of a
    string value / an element of a list of strings."""

    equals: str | bool | int | float | None = None
    contains: str | None = None

    @model_validator(mode="after")
    def _one(self) -> MetadataMatch:
        if (self.equals is None) == (self.contains is None):
            raise ValueError("give exactly one of equals, contains")
        return self


class RuleConditions(_Frozen):
    """``when``: every condition given must hold."""

    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    domain: tuple[str, ...] | None = None
    customer_tier: tuple[str, ...] | None = None
    tenant: tuple[str, ...] | None = None
    metadata: dict[str, MetadataMatch] = Field(default_factory=dict)
    pii: tuple[str, ...] | None = None  # any of these kinds found; "any": any kind

    _lists = field_validator("domain", "customer_tier", "tenant", "pii", mode="before")(_as_tuple)

    @field_validator("domain", "customer_tier", "tenant", "pii")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list matches nothing; omit the condition instead")
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``metadata: {source: crm}`` means ``{source: {equals: crm}}``."""
        if not isinstance(value, dict):
            return value
        return {k: v if isinstance(v, dict) else {"equals": v} for k, v in value.items()}

    @field_validator("metadata")
    @classmethod
    def _keys(cls, value: dict[str, MetadataMatch]) -> dict[str, MetadataMatch]:
        bad = [k for k in value if not k or "'" in k or "\\" in k]
        if bad:
            raise ValueError(f"metadata keys must be non-empty without quotes: {bad}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> RuleConditions:
        for low, high in (("min_tokens", "max_tokens"), ("min_chars", "max_chars")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} {lo} > {high} {hi}")
        return self


class RuleAction(_Frozen):
    """``then``: force a tier, raise to at least a tier (``floor``: a preference, like
    ``force``, that every constraint below still overrides), forbid tiers, cap at a tier.
    Any combination."""

    force: str | None = Field(None, pattern=TIER_NAME)
    floor: str | None = Field(None, pattern=TIER_NAME)
    forbid: tuple[str, ...] = ()
    cap: str | None = Field(None, pattern=TIER_NAME)

    _lists = field_validator("forbid", mode="before")(_as_tuple)

    @model_validator(mode="after")
    def _some(self) -> RuleAction:
        if self.force is None and self.floor is None and not self.forbid and self.cap is None:
            raise ValueError("a rule needs at least one of force, floor, forbid, cap")
        return self


class RuleSpec(_Frozen):
    """One rule: an id (recorded in ``route_reason``), conditions and an action."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str = ""
    when: RuleConditions = RuleConditions()
    then: RuleAction


class EntitlementsSpec(_Frozen):
    """The most expensive tier each customer tier may use; ``default`` applies to
    customer tiers not listed and to rows without one (None: no limit)."""

    max_tier: dict[str, str] = Field(default_factory=dict)
    default: str | None = Field(None, pattern=TIER_NAME)


class PiiPatternSpec(_Frozen):
    """An extra PII kind: a polars (Rust) regex and an optional named validator."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    pattern: str
    validator: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PiiPatternSpec:
        if self.name in BUILTIN_KINDS:
            raise ValueError(f"{self.name!r} is a built-in PII kind")
        if self.validator is not None and self.validator not in VALIDATORS:
            raise ValueError(f"unknown validator {self.validator!r}; known: {sorted(VALIDATORS)}")
        check_pattern(self.pattern)
        return self


class PiiSpec(_Frozen):
    """PII detection. ``action: reject`` — a prompt with PII may only go to tiers marked
    ``pii_allowed`` and is rejected when none is allowed; ``record`` — kinds are only
    recorded. ``kinds``: the built-in kinds to use (None: all)."""

    enabled: bool = False
    kinds: tuple[str, ...] | None = None
    extra: tuple[PiiPatternSpec, ...] = ()
    action: Literal["reject", "record"] = "reject"

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - set(BUILTIN_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; built-in: {sorted(BUILTIN_KINDS)}")
        return value

    @property
    def kind_names(self) -> tuple[str, ...]:
        builtin = tuple(BUILTIN_KINDS) if self.kinds is None else self.kinds
        return tuple(sorted({*builtin, *(e.name for e in self.extra)}))

    def detector(self) -> PiiDetector:
        """The detector for these kinds (build once per worker; it is stateless)."""
        builtin = [BUILTIN_KINDS[k] for k in (self.kinds or tuple(BUILTIN_KINDS))]
        extra = [
            PiiKind(e.name, e.pattern, VALIDATORS[e.validator] if e.validator else None)
            for e in self.extra
        ]
        return PiiDetector([*builtin, *extra])


def check_rules(
    tier_order: Sequence[str],
    rules: Sequence[RuleSpec],
    entitlements: EntitlementsSpec,
    pii: PiiSpec | None = None,
) -> None:
    """Cross-checks against the tiers (for ``Policy``'s validator): unique rule ids,
    known tier names, known PII kinds. Raises ``ValueError`` listing every problem."""
    known, problems = set(tier_order), []
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        problems.append(f"rule ids must be unique: {ids}")
    kinds = set(pii.kind_names if pii is not None else BUILTIN_KINDS) | {ANY_PII}
    for r in rules:
        then = r.then
        named = [t for t in (then.force, then.floor, then.cap, *then.forbid) if t is not None]
        problems += [f"rule {r.id}: unknown tier {t!r}" for t in named if t not in known]
        problems += [
            f"rule {r.id}: unknown PII kind {k!r}" for k in r.when.pii or () if k not in kinds
        ]
    for customer, tier in {**entitlements.max_tier, "(default)": entitlements.default}.items():
        if tier is not None and tier not in known:
            problems.append(f"entitlements: {customer}: unknown tier {tier!r}")
    if problems:
        raise ValueError("; ".join(problems))


# --- evaluation ---------------------------------------------------------------------


def _condition_expr(when: RuleConditions) -> pl.Expr:
    """The boolean expression of ``when`` over the prepared frame (nulls count as false)."""
    parts: list[pl.Expr] = [pl.lit(value=True)]
    tokens, chars = pl.col(TOKENS), pl.col(PROMPT).str.len_chars()
    for value, expr in (
        (when.min_tokens, lambda v: tokens >= v),
        (when.max_tokens, lambda v: tokens <= v),
        (when.min_chars, lambda v: chars >= v),
        (when.max_chars, lambda v: chars <= v),
        (when.domain, lambda v: pl.col("domain").is_in(v)),
        (when.customer_tier, lambda v: pl.col("customer_tier").is_in(v)),
        (when.tenant, lambda v: pl.col("tenant").is_in(v)),
    ):
        if value is not None:
            parts.append(expr(value))
    parts += [_metadata_expr(key, match) for key, match in when.metadata.items()]
    if when.pii is not None:
        found = pl.col(_PII)
        parts.append(
            found.list.len() > 0
            if ANY_PII in when.pii
            else pl.any_horizontal([found.list.contains(k) for k in when.pii])
        )
    return pl.all_horizontal(parts).fill_null(value=False)


def _metadata_expr(key: str, match: MetadataMatch) -> pl.Expr:
    value = pl.col(_META + key)
    if match.contains is None:
        wanted = match.equals
        text = json.dumps(wanted) if isinstance(wanted, bool) else str(wanted)
        return value == text
    element = json.dumps(match.contains, ensure_ascii=False)
    return (
        pl.when(value.str.starts_with("["))
        .then(value.str.contains(element, literal=True))
        .otherwise(value.str.contains(match.contains, literal=True))
    )


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


_STEPS = ("floor", "forbid", "cap", "gaming", "entitlement", "pii", "fit")


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
    data = _prepare(frame, pii_kinds)
    matches = _matches(data, rules)
    start = scored.replace_strict(order, return_dtype=pl.Int64).to_numpy()
    forced, forced_by = _forced(matches, rules, order, n)
    desired = np.where(forced >= 0, forced, start)
    current = np.where(forced >= 0, desired, np.maximum(desired, _floor(matches, rules, order)))
    moves = [(desired, current)]  # one (before, after) per step of _STEPS
    masks = _step_masks(data, matches, rules, entitlements, pii_allowed, input_limits, order)
    masks.insert(_STEPS.index("gaming") - 1, _gaming_mask(flagged_cap, order, n))
    allowed = np.ones((n, len(tier_order)), dtype=np.bool_)
    for mask in masks:
        before = current
        if mask is not None:
            allowed &= mask
            current = _nearest(allowed, current)
        moves.append((before, current))
    decisions = _explain(
        data, rules, matches, tier_order, start, forced_by, moves,
        entitlements, pii_allowed, input_limits, score_reasons,
    )  # fmt: skip
    bits = allowed.astype(np.int64) @ (np.int64(1) << np.arange(len(tier_order), dtype=np.int64))
    return replace(decisions, allowed=pl.Series("allowed", bits, dtype=pl.Int64))


def allowed_tiers(mask: int, tier_order: Sequence[str]) -> list[str]:
    """The tier names of an ``allowed`` bit mask, cheapest first."""
    return [name for k, name in enumerate(tier_order) if mask >> k & 1]


def _prepare(
    frame: pl.DataFrame, pii_kinds: Sequence[Sequence[str]] | pl.Series | None
) -> pl.DataFrame:
    """The frame with every column the rules read (absent ones as nulls, as strings)."""
    columns = [
        pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c)
        for c in TEXT_COLUMNS
    ]
    lists = pl.List(pl.String)
    if pii_kinds is None:
        kinds = pl.repeat(pl.lit([], lists), frame.height).alias(_PII)
    else:
        series = pii_kinds if isinstance(pii_kinds, pl.Series) else pl.Series(pii_kinds)
        if len(series) != frame.height:
            raise ValueError(f"{len(series)} PII kind lists for {frame.height} rows")
        kinds = pl.lit(series.cast(lists)).fill_null(pl.lit([], lists)).alias(_PII)
    return frame.with_columns(*columns, kinds)


def _matches(data: pl.DataFrame, rules: Sequence[RuleSpec]) -> np.ndarray:
    """rules × rows: does the rule match the row?"""
    if not rules:
        return np.zeros((0, data.height), dtype=np.bool_)
    used = {TOKENS for r in rules if r.when.min_tokens is not None or r.when.max_tokens is not None}
    if used - set(data.columns):
        raise ValueError(f"rules test input tokens but the frame has no {TOKENS!r} column")
    keys = sorted({key for r in rules for key in r.when.metadata})
    data = data.with_columns(_metadata_value(data.get_column("metadata"), k) for k in keys)
    names = [f"__rules_match{i}" for i in range(len(rules))]
    exprs = [_condition_expr(r.when).alias(name) for r, name in zip(rules, names, strict=True)]
    # with_columns, not select: an empty ``when`` is a literal, broadcast to every row
    return data.with_columns(exprs).select(names).to_numpy().T.astype(np.bool_)


def _metadata_value(metadata: pl.Series, key: str) -> pl.Series:
    """The JSON text of top-level ``key`` per row (null: absent or not JSON). JSON path
    matching costs ~0.6 µs a row, so it runs only on rows whose text has ``"key"``."""
    name = _META + key
    if not key.isascii() or not key.isprintable():  # the JSON text may escape such keys
        return metadata.str.json_path_match(f"$['{key}']").alias(name)
    rows = metadata.str.contains(json.dumps(key), literal=True).fill_null(value=False)
    result = pl.repeat(None, len(metadata), dtype=pl.String, eager=True).alias(name)
    if not rows.any():
        return result
    return result.scatter(rows.arg_true(), metadata.filter(rows).str.json_path_match(f"$['{key}']"))


def _forced(
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


def _floor(matches: np.ndarray, rules: Sequence[RuleSpec], order: Mapping[str, int]) -> np.ndarray:
    """The highest ``floor`` of the matching rules per row (-1: none)."""
    floor = np.full(matches.shape[1], -1, np.int64)
    for i, rule in enumerate(rules):
        if rule.then.floor is not None:
            floor = np.where(matches[i], np.maximum(floor, order[rule.then.floor]), floor)
    return floor


def _step_masks(
    data: pl.DataFrame,
    matches: np.ndarray,
    rules: Sequence[RuleSpec],
    entitlements: EntitlementsSpec,
    pii_allowed: set[str] | frozenset[str],
    input_limits: Mapping[str, int] | None,
    order: Mapping[str, int],
) -> list[np.ndarray | None]:
    """Per step of :data:`_STEPS`, rows × tiers: which tiers that step allows (None: all)."""
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
    has_pii = data.get_column(_PII).list.len().to_numpy() > 0
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


def _gaming_mask(
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


def _nearest(allowed: np.ndarray, current: np.ndarray) -> np.ndarray:
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


def _explain(
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
) -> Decisions:
    """Tiers and reasons. Rows that no rule touched keep the score's reason; the others
    are grouped by everything their reason depends on, and each group's text is built
    once (a million rows capped by the same entitlement cost one string, not a million)."""
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
        return Decisions(tier, base, rejected)
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
    return Decisions(tier, base.scatter(index, reasons), rejected.scatter(index, why))


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
        "pii": data.get_column(_PII).gather(rows).list.join(","),
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
        self.pii = data.get_column(_PII)
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
            cause = self.cause(_STEPS[step], row, int(before[row]))
            new = "rejected" if after[row] < 0 else self.order[after[row]]
            parts.append(f"{cause}: {self.order[before[row]]} → {new}")
            if after[row] < 0:
                rejected = self.rejection(_STEPS[step], row, cause)
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
