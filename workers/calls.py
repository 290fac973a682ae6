"""The serving engine: one round of one tier batch — budgets, breakers, rate limits,
retries, fallback, cascade — and the seam where provider batch mode plugs in.

**The seam.** A routed tier batch is executed by a :class:`TierEngine`: rows in, one
:class:`Served` out per row, in order. ``dispatch`` (workers/stages.py) runs one per tier
batch. :class:`Caller` is the realtime engine and today the only one. A provider-batch
engine (issue 15: a tier with ``mode: batch`` executes its round as provider batches)
implements the same Protocol; it shares the engine's accounting (``workers/accounting.py``:
the request a row makes, the cache, the ledger key and estimate, settling at the reported
usage) and replaces only the attempt loop (``workers/attempts.py``), which is realtime's
alone.

**The realtime engine.** Per distinct prompt (``Caller.run``), on this process's I/O loop,
at most the tier's ``concurrency`` at a time — every guard awaited there, none blocking it
(``workers/guards/``):

1. **Cache** — an answer cached for the same model, parameters and normalised text
   (``workers/guards/cache.py``) is served at no cost; the whole batch's first look-ups are one
   round trip, before any call.
2. **Budget** — reserve the estimate (input tokens × input price + max output tokens ×
   output price) on every scope of ``policy.budgets`` (tenant/day, tenant/month, job,
   job+tier). When it does not fit: ``downgrade`` tries the cheaper tiers the prompt is
   allowed (nearest first), else the row is ``over_budget`` — never sent, resubmittable.
3. **Breaker** — a model whose breaker is open is skipped; the next model of the tier is
   tried, then the tier's ``fallback`` tiers the prompt is allowed; ``fallback_from`` names
   the first model that could not serve. A half-open breaker lets a few probe calls through.
4. **Attempts** (``workers/attempts.py``): the model's global rate limit, the breaker, the
   call, retries with full-jitter backoff honouring ``Retry-After`` up to
   ``retry.max_attempts`` and within the job's retry budget (``retry.job_budget`` × the
   job's prompts); permanent errors (400, 401/403, 404, content filter) are not retried.
5. **Settle** the reservation with the reported usage (and cache the answer, at the same
   time), or release it on failure.
6. **Cascade** — on a tier with ``cascade``, the batch's answers are scored together
   (``workers/verifier.py``: logprob confidence, or the job's verifier); those below the
   tier's threshold are asked again of the nearest dearer tier the prompt is allowed; the
   row keeps the better tier's answer, ``escalated_from``, the first answer's score
   (``confidence``) and its source (``confidence_source``); its cost is both calls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, auto
from typing import Protocol

from routing.cost import ZERO
from routing.plan import JobContext
from routing.policy import ModelSpec, Policy, TierSpec
from routing.rules import allowed_tiers
from routing.schema import Status
from workers.accounting import Accounting
from workers.aio import io_loop
from workers.attempts import Attempts, no_call
from workers.guards.bundle import Guards
from workers.provider import Client, Completion, client_for
from workers.settings import Settings
from workers.verifier import AnswerCheck

# ---------------------------------------------------------------- rows in, rows out


@dataclass(frozen=True)
class Row:
    """What serving needs of one distinct prompt."""

    ref: str  # "c<chunk>/r<input row>", never the customer's prompt_id: ledger key, cache owner
    prompt: str
    system: str | None
    max_output_tokens: int | None
    tenant: str
    input_tokens: int
    allowed: int | None  # bit mask of the tiers the policy allows (None: any)


class Outcome(Enum):
    """How serving a prompt on one tier ended — internal to the engine, never written out.

    Every outcome but ``UNAVAILABLE`` is already a row's final :class:`Status`.
    ``UNAVAILABLE`` (every model of the tier down: breaker open, failing or no client) is
    what fallback acts on; unresolved, it ends as ``failed`` (:func:`final_status`)."""

    OK = auto()
    FAILED = auto()  # a permanent error, or retries exhausted with nothing to fall back on
    UNAVAILABLE = auto()  # every model of the tier down (breaker open / failing)
    OVER_BUDGET = auto()


_FINAL: dict[Outcome, Status] = {
    Outcome.OK: Status.OK,
    Outcome.FAILED: Status.FAILED,
    Outcome.UNAVAILABLE: Status.FAILED,
    Outcome.OVER_BUDGET: Status.OVER_BUDGET,
}


def final_status(outcome: Outcome) -> Status:
    """The row status an engine outcome ends as (the one mapping between the two)."""
    return _FINAL[outcome]


@dataclass
class Served:
    """The outcome for one prompt: its final answer and everything that led to it."""

    outcome: Outcome
    done: Completion
    tier: TierSpec
    model: ModelSpec
    cost: Decimal = ZERO
    calls: int = 0
    fallback_from: str | None = None
    escalated_from: str | None = None
    confidence: float | None = None  # the cascade's score of the tier's answer
    confidence_source: str | None = None  # what scored it: logprobs | verifier:<version>
    cache_hit: bool = False
    notes: list[str] = field(default_factory=list)
    mode: str = "realtime"  # how the answer was obtained: "realtime" or "batch"
    batch_id: str | None = None  # the provider batch that answered, in batch mode
    round: int = 1  # the job round of the answer (2: an escalation, a cascade's second call)
    batch_saved: Decimal = ZERO  # realtime price − batch price of the row's batch calls
    explored: str | None = None  # the tier that answered it too (policy explore: labels)

    @property
    def status(self) -> Status:
        return final_status(self.outcome)


class TierEngine(Protocol):
    """Executes one round of one tier batch (the seam: see the module doc)."""

    def run(self, rows: Sequence[Row]) -> list[Served]:
        """One outcome per row, in the rows' order."""
        ...


# ---------------------------------------------------------------- the realtime engine


class Caller:
    """The realtime :class:`TierEngine`: serves the distinct prompts of one routed batch
    with provider calls made now (see the module doc)."""

    def __init__(
        self,
        policy: Policy,
        settings: Settings,
        guards: Guards,
        ctx: JobContext,
        tier: TierSpec,
        check: AnswerCheck | None = None,
        *,
        cascade: bool = True,
    ) -> None:
        self.policy, self.settings, self.guards, self.ctx, self.tier = (
            policy,
            settings,
            guards,
            ctx,
            tier,
        )
        # How cascade answers are scored (a verifier needs the job's copy: Runtime.answer_check)
        self.check = check or AnswerCheck(None, ctx)
        self.cascade = cascade  # False: a tier's plain answers (exploration, judging)
        self.accounts = Accounting(policy, guards, ctx)
        retry_limit = max(1, math.ceil(policy.retry.job_budget * max(ctx.rows_total, 1)))
        self._attempts = Attempts(
            guards.limiter, guards.breaker, guards.retries, policy.retry, ctx.job_id, retry_limit
        )
        self._clients: dict[tuple[str, str], Client | Exception] = {}
        for t in self._reachable(tier):  # resolved here: the I/O loop cannot build clients
            for model in t.models:
                key = (model.provider, model.name)
                if key not in self._clients:
                    try:
                        self._clients[key] = client_for(policy, model, settings)
                    except Exception as exc:  # e.g. a fallback provider with no key
                        self._clients[key] = exc

    def _reachable(self, tier: TierSpec) -> list[TierSpec]:
        """Tiers a prompt of ``tier`` may end on: fallbacks, cheaper (downgrade), next (cascade)."""
        names = self.policy.tier_names
        i = names.index(tier.name)
        out = [tier, *(self.policy.tier(n) for n in tier.fallback), *self.policy.tiers[:i]]
        if tier.cascade is not None and i + 1 < len(names):
            out.append(self.policy.tiers[i + 1])
        return out

    def run(self, rows: Sequence[Row]) -> list[Served]:
        return io_loop().run(self._run(rows))

    async def _run(self, rows: Sequence[Row]) -> list[Served]:
        await self.accounts.prefetch(rows, self.tier)
        gate = asyncio.Semaphore(self.tier.concurrency)

        async def one(row: Row) -> Served:
            async with gate:
                return await self._serve(row)

        served = list(await asyncio.gather(*(one(r) for r in rows)))
        unsure = self._score_cascades(rows, served) if self.cascade else []

        async def again(i: int) -> None:
            async with gate:
                served[i] = await self._cascade(rows[i], served[i])

        await asyncio.gather(*(again(i) for i in unsure))
        return served

    def _score_cascades(self, rows: Sequence[Row], served: list[Served]) -> list[int]:
        """Score the answers of cascade tiers (one call per tier: a verifier scores them
        together); the indexes of those below their tier's threshold."""
        by_tier: dict[str, list[int]] = {}
        for i, s in enumerate(served):
            if s.outcome is Outcome.OK and s.tier.cascade is not None:
                by_tier.setdefault(s.tier.name, []).append(i)
        unsure = []
        for name, idx in by_tier.items():
            tier = self.policy.tier(name)
            assert tier.cascade is not None
            scores = self.check.scores(
                tier, [rows[i].prompt for i in idx], [served[i].done for i in idx]
            )
            source = self.check.source(tier)
            for i, score in zip(idx, scores, strict=True):
                served[i].confidence, served[i].confidence_source = score, source
                if score < tier.cascade.threshold:
                    unsure.append(i)
        return unsure

    def _allowed(self, row: Row) -> list[str]:
        names = self.policy.tier_names
        return list(names) if row.allowed is None else allowed_tiers(row.allowed, names)

    async def _serve(self, row: Row) -> Served:
        tier, allowed, names = self.tier, self._allowed(row), self.policy.tier_names
        served = await self._on_tier(row, tier)
        if served.outcome is Outcome.UNAVAILABLE and served.calls == 0 and not tier.fallback:
            # Only open breakers stood in the way and there is nowhere else to go: wait one
            # cool-down for a half-open probe rather than fail the row on a passing blip.
            await asyncio.sleep(self.policy.breaker.cooldown_s)
            served = await self._on_tier(row, tier)
        if served.outcome is Outcome.UNAVAILABLE:
            first = served.fallback_from
            for name in tier.fallback:
                if name not in allowed:
                    continue
                other = await self._on_tier(row, self.policy.tier(name))
                if other.outcome is not Outcome.UNAVAILABLE:
                    served = other
                    break
            served.fallback_from = first
        downgrade = self.policy.budgets.on_exhausted == "downgrade"
        if served.outcome is Outcome.OVER_BUDGET and downgrade:
            here = names.index(served.tier.name)
            for name in reversed(names[:here]):
                if name not in allowed:
                    continue
                other = await self._on_tier(row, self.policy.tier(name))
                if other.outcome is not Outcome.OVER_BUDGET:
                    other.notes.append(f"budget: {served.tier.name} → {name}")
                    served = other
                    break
        return served

    async def _cascade(self, row: Row, served: Served) -> Served:
        """An answer scored below its tier's cascade threshold: ask the next dearer tier the
        row is allowed, and keep the better tier's answer (:func:`escalated`)."""
        assert served.tier.cascade is not None and served.confidence is not None
        names = self.policy.tier_names
        allowed = self._allowed(row)
        dearer = [n for n in names[names.index(served.tier.name) + 1 :] if n in allowed]
        if not dearer:
            served.notes.append(f"{_scored(served)}: no dearer tier allowed")
            return served
        better = await self._on_tier(row, self.policy.tier(dearer[0]))
        return escalated(served, better)

    async def _on_tier(self, row: Row, tier: TierSpec) -> Served:
        """Try the tier's models in order (the first is primary)."""
        request = self.accounts.request(row, tier)
        skipped: str | None = None
        last: Served | None = None
        calls = 0
        for model in tier.models:
            target = f"{model.provider}/{model.name}"
            client = self._clients.get((model.provider, model.name))
            if client is None or isinstance(client, Exception):
                skipped = skipped or target
                last = Served(Outcome.UNAVAILABLE, no_call(f"{target}: {client}"), tier, model)
                continue
            hit = await self.accounts.cached(row, model, request)
            if hit is not None:
                return _from_cache(hit, tier, model, calls, skipped)
            held, fits = await self.accounts.reserve(row, tier, model, request)
            if not fits:
                error = f"over budget: ${held.estimate} for {tier.name} does not fit a budget cap"
                return Served(Outcome.OVER_BUDGET, no_call(error), tier, model, calls=calls)
            done = await self._attempts.call(client, model, request, held.tokens, tier.name)
            calls += done.attempts
            if done.ok:
                cost = await self.accounts.settle(held, row, tier, model, request, done)
                return Served(Outcome.OK, done, tier, model, cost, calls, fallback_from=skipped)
            await self.accounts.release(held)
            if not done.retryable:
                return Served(Outcome.FAILED, done, tier, model, calls=calls, fallback_from=skipped)
            skipped = skipped or target
            last = Served(Outcome.UNAVAILABLE, done, tier, model, calls=calls)
        assert last is not None
        last.fallback_from = skipped
        last.calls = calls
        return last


def _scored(served: Served) -> str:
    """``confidence 0.412`` or ``verifier:learned-1/… 0.412``: a cascade score for notes."""
    source = served.confidence_source
    name = "confidence" if source in (None, "logprobs") else source
    return f"{name} {served.confidence or 0.0:.3f}"


def escalated(first: Served, better: Served) -> Served:
    """A row's outcome after a cascade asked a dearer tier again (``better``) because its
    first answer's score (``first.confidence``, from ``first.confidence_source``) was below
    the tier's threshold: the better answer with ``escalated_from``, the first score and
    its source, both calls' cost and the rounds added — or, when the second call did not
    succeed, the first answer with a note (and any cost)."""
    assert first.tier.cascade is not None
    threshold = first.tier.cascade.threshold
    if better.outcome is not Outcome.OK:
        first.notes.append(f"escalation to {better.tier.name} failed: {better.done.error}")
        first.cost += better.cost
        first.calls += better.calls
        return first
    better.escalated_from = first.tier.name
    better.confidence, better.confidence_source = first.confidence, first.confidence_source
    better.cost += first.cost
    better.calls += first.calls
    better.round += first.round
    better.batch_saved += first.batch_saved
    better.fallback_from = first.fallback_from or better.fallback_from
    better.notes = [
        *first.notes,
        f"{_scored(first)} < {threshold:.2f}: {first.tier.name} → {better.tier.name}",
        *better.notes,
    ]
    return better


def _from_cache(
    hit: tuple[Completion, Decimal | None],
    tier: TierSpec,
    model: ModelSpec,
    calls: int,
    skipped: str | None,
) -> Served:
    """A cached answer served; this row's own answer from an earlier delivery of the job (a
    redelivered task) keeps the cost and attempts it was paid and settled at."""
    cached, own_cost = hit
    if own_cost is not None:
        calls += cached.attempts
        served = Served(Outcome.OK, cached, tier, model, cost=own_cost, calls=calls)
    else:
        served = Served(Outcome.OK, cached, tier, model, calls=calls, cache_hit=True)
    served.fallback_from = skipped
    return served
