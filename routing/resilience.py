"""Policy sections for resilience: budgets, circuit breakers, cascade (pure data), and the
budget scopes a call is charged to (:func:`budget_scopes`).

They are part of :class:`routing.policy.Policy` (and of its content hash). The mechanisms
that enforce them live in ``workers/``: the budget ledger (``workers/guards/ledger.py``),
breakers and global rate limits (``workers/guards/breaker.py``, ``ratelimit.py``), retries,
fallback and cascade in the serving engine (``workers/calls.py``, ``workers/attempts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from routing.frozen import Frozen

WILDCARD = "*"
PERIOD_MARGIN_S = 86400  # a tenant period's counters outlive the period by a day
JOB_SCOPE_TTL_S = 7 * 86400  # as Settings.job_ttl_s; refreshed on every write


class BreakerSpec(Frozen):
    """A circuit breaker per (provider, model), shared by every worker.

    Closed → open after ``failures`` consecutive failures, or when at least ``min_calls``
    calls in the last ``window_s`` seconds failed at a rate ≥ ``failure_rate``. Open → half-open
    after ``cooldown_s``: at most ``half_open_probes`` calls at a time probe the model; a
    success closes the breaker, a failure opens it again for another cool-down."""

    failures: int = Field(5, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    window_s: float = Field(30.0, gt=0)
    min_calls: int = Field(20, ge=1)
    cooldown_s: float = Field(10.0, gt=0)
    half_open_probes: int = Field(1, ge=1)


class BudgetLimit(Frozen):
    """A spending cap: USD, tokens (input + output), or both (``None`` = no cap)."""

    usd: Decimal | None = Field(None, ge=0)
    tokens: int | None = Field(None, ge=0)

    @property
    def capped(self) -> bool:
        return self.usd is not None or self.tokens is not None


class BudgetSpec(Frozen):
    """Caps checked before every provider call (reserve the estimate, settle the usage).

    ``tenant_day`` / ``tenant_month``: per tenant per UTC day / month, keyed by tenant name
    or ``"*"`` for every tenant without its own entry. ``job``: per job. ``tier``: per job and
    tier, keyed by tier name. When a reservation does not fit, ``on_exhausted`` decides:
    ``downgrade`` tries the cheaper tiers the prompt may use, cheapest-nearest first, then
    marks the row ``over_budget``; ``over_budget`` marks it at once. An ``over_budget`` row
    was never sent and can be resubmitted."""

    tenant_day: dict[str, BudgetLimit] = Field(default_factory=dict)
    tenant_month: dict[str, BudgetLimit] = Field(default_factory=dict)
    job: BudgetLimit = BudgetLimit()
    tier: dict[str, BudgetLimit] = Field(default_factory=dict)
    on_exhausted: Literal["downgrade", "over_budget"] = "downgrade"
    reservation_ttl_s: int = Field(3600, gt=0, description="an unsettled reservation expires")

    @property
    def enabled(self) -> bool:
        limits = [
            *self.tenant_day.values(),
            *self.tenant_month.values(),
            self.job,
            *self.tier.values(),
        ]
        return any(limit.capped for limit in limits)

    def for_tenant(self, period: dict[str, BudgetLimit], tenant: str) -> BudgetLimit:
        return period.get(tenant) or period.get(WILDCARD) or BudgetLimit()


class CascadeSpec(Frozen):
    """Answer on this tier first; when the answer's score is below the threshold, ask the
    next tier too and keep its answer. Both calls are paid and attributed. The score is
    one of (``routing.confidence``):

    - ``min_confidence``: the answer's confidence (mean token probability from logprobs;
      0 for a refusal, an empty or a truncated answer);
    - ``verifier`` + ``min_score``: P(this answer is as good as the next tier's) from a
      verifier trained by ``batch-router train --verifier`` (a local file — relative to the
      policy file — or an ``s3://`` URI, copied into the job when it is planned), with the
      same zero for an empty, truncated or refused answer;
    - ``judge`` + ``min_score``: the grade (0–1) the primary model of the tier named
      ``judge`` gives the answer (``routing.judge``, AutoMix-style); its calls are paid and
      attributed to the row.
    """

    min_confidence: float | None = Field(None, ge=0, le=1)
    verifier: str | None = None
    judge: str | None = None
    min_score: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_signal(self) -> CascadeSpec:
        if self.verifier is not None and not self.verifier.strip():
            raise ValueError("cascade.verifier is empty; give a file from train --verifier")
        scored = [x for x in (self.verifier, self.judge) if x is not None]
        if len(scored) > 1 or (self.min_confidence is not None) == bool(scored):
            raise ValueError(
                "a cascade takes one signal: min_confidence, or verifier or judge with min_score"
            )
        if bool(scored) != (self.min_score is not None):
            raise ValueError("min_score goes with a cascade verifier or judge, and they need it")
        return self

    @property
    def threshold(self) -> float:
        """The score below which an answer is escalated."""
        value = self.min_confidence if self.min_score is None else self.min_score
        assert value is not None  # the validator guarantees one
        return value


# ---------------------------------------------------------------- budget scopes


@dataclass(frozen=True)
class Scope:
    """A counter a call is charged to, with its caps (``None`` = tracked, not capped)."""

    id: str  # e.g. "tenant:acme:day:2026-11-28", "job:J1", "job:J1:tier:expert"
    usd: Decimal | None
    tokens: int | None  # cap on input + output tokens
    ttl_s: int  # expiry of the scope's counters (period length + a margin)

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or (self.usd is not None and self.usd < 0):
            raise ValueError(f"scope {self.id!r}: ttl_s must be > 0 and usd ≥ 0")
        if self.tokens is not None and self.tokens < 0:
            raise ValueError(f"scope {self.id!r}: tokens must be ≥ 0")


def budget_scopes(
    spec: BudgetSpec,
    tenant: str,
    job_id: str,
    tier: str,
    now: datetime,
    *,
    job_ttl_s: int = JOB_SCOPE_TTL_S,
) -> list[Scope]:
    """The four scopes a call is charged to, capped or not (uncapped ones still track
    usage): tenant per UTC day, tenant per UTC month (tenant caps fall back to ``"*"``),
    the job, the job and tier. ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("budget_scopes needs a timezone-aware `now` (e.g. datetime.now(UTC))")
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)

    def until(end: datetime) -> int:
        return int(-(-(end - now).total_seconds() // 1)) + PERIOD_MARGIN_S

    def scope(scope_id: str, limit: BudgetLimit, ttl_s: int) -> Scope:
        return Scope(scope_id, limit.usd, limit.tokens, ttl_s)

    return [
        scope(
            f"tenant:{tenant}:day:{day:%Y-%m-%d}",
            spec.for_tenant(spec.tenant_day, tenant),
            until(day + timedelta(days=1)),
        ),
        scope(
            f"tenant:{tenant}:month:{month:%Y-%m}",
            spec.for_tenant(spec.tenant_month, tenant),
            until(next_month),
        ),
        scope(f"job:{job_id}", spec.job, job_ttl_s),
        scope(f"job:{job_id}:tier:{tier}", spec.tier.get(tier, BudgetLimit()), job_ttl_s),
    ]
