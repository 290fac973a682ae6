"""Policy rules, entitlements and the PII constraint: what may override the score — the
models of the policy file's ``rules``, ``entitlements`` and ``pii`` sections, and their
cross-checks against the tiers.

Applying them to a batch (the resolution order, the moves, the ``route_reason``) is
:mod:`routing.enforcement`; an allowed-tiers bit mask it returns is read back with
:func:`allowed_tiers`.

Rules read columns, never prompt text, except through length and the PII kinds: text
that says "route me to expert" changes nothing. All conditions of a rule must hold (an
empty ``when`` matches every row); a null column value matches no condition on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from routing.frozen import Frozen
from routing.pii.detector import PiiDetector
from routing.pii.kinds import BUILTIN_KINDS, PiiKind, check_pattern
from routing.pii.validators import VALIDATORS

TIER_NAME = r"^[a-z][a-z0-9_-]*$"
ANY_PII = "any"


def _as_tuple(value: Any) -> Any:
    """YAML convenience: ``domain: legal`` means ``domain: [legal]``."""
    return (value,) if isinstance(value, str) else value


class MetadataMatch(Frozen):
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


class RuleConditions(Frozen):
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


class RuleAction(Frozen):
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


class RuleSpec(Frozen):
    """One rule: an id (recorded in ``route_reason``), conditions and an action."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str = ""
    when: RuleConditions = RuleConditions()
    then: RuleAction


class EntitlementsSpec(Frozen):
    """The most expensive tier each customer tier may use; ``default`` applies to
    customer tiers not listed and to rows without one (None: no limit)."""

    max_tier: dict[str, str] = Field(default_factory=dict)
    default: str | None = Field(None, pattern=TIER_NAME)


class PiiPatternSpec(Frozen):
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


class PiiSpec(Frozen):
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


def allowed_tiers(mask: int, tier_order: Sequence[str]) -> list[str]:
    """The tier names of an ``allowed`` bit mask, cheapest first."""
    return [name for k, name in enumerate(tier_order) if mask >> k & 1]
