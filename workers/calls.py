"""The serving engine: one round of one tier batch — budgets, breakers, rate limits,
retries, fallback, cascade — and the seam where provider batch mode plugs in.

**The seam.** A routed tier batch is executed by a ``TierEngine`` (``workers/served.py``,
with :class:`Row`, :class:`Served` and the cascade merge ``escalated``): rows in, one
:class:`Served` out per row, in order. ``dispatch`` (workers/stages.py) runs one per tier
batch. :class:`Caller` is the realtime engine; the provider-batch engine
(``workers/batches/``: a tier with ``mode: batch`` executes its rounds as provider
batches) shares its accounting (``workers/accounting.py``: the request a row makes, the
cache, the ledger key and estimate, settling at the reported usage) and its cascade scoring
(:meth:`Caller.score`), and replaces only the attempt loop (``workers/attempts.py``), which
is realtime's alone.

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
   (``workers/verifier.py``: logprob confidence, or the job's verifier; or the grades of a
   judge tier's model, its calls paid by the rows); those below the
   tier's threshold are asked again of the nearest dearer tier the prompt is allowed; the
   row keeps the better tier's answer, ``escalated_from``, the first answer's score
   (``confidence``) and its source (``confidence_source``); its cost is both calls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from decimal import Decimal

from routing.plan import JobContext
from routing.policy import ModelSpec, Policy, TierSpec
from routing.rules import allowed_tiers
from workers.accounting import Accounting
from workers.aio import io_loop
from workers.attempts import Attempts, no_call
from workers.guards.bundle import Guards
from workers.provider import Client, Completion, client_for
from workers.served import Outcome, Row, Served, escalated, grade_of, judge_row, scored
from workers.settings import Settings
from workers.verifier import AnswerCheck

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
        reachable = self._reachable(tier)
        for t in reachable:  # resolved here: the I/O loop cannot build clients
            for model in t.models:
                key = (model.provider, model.name)
                if key not in self._clients:
                    try:
                        self._clients[key] = client_for(policy, model, settings)
                    except Exception as exc:  # e.g. a fallback provider with no key
                        self._clients[key] = exc
        # The judges of cascades that grade with a model (built here too, off the loop)
        for t in reachable:  # a verifier is read from the store here, off the loop
            if cascade and t.cascade and t.cascade.verifier:
                self.check.preload(t)
        judges = {t.cascade.judge for t in reachable if t.cascade and t.cascade.judge}
        self._judges = {
            name: Caller(policy, settings, guards, ctx, policy.tier(name), check, cascade=False)
            for name in sorted(judges)
            if cascade
        }

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
        unsure = await self._score_cascades(rows, served) if self.cascade else []

        async def again(i: int) -> None:
            async with gate:
                served[i] = await self._cascade(rows[i], served[i])

        await asyncio.gather(*(again(i) for i in unsure))
        return served

    def score(self, rows: Sequence[Row], served: list[Served]) -> None:
        """Score answers served elsewhere (a provider batch) as a cascade of their tier does:
        ``confidence`` and ``confidence_source`` set, a judge's cost charged to the row."""
        io_loop().run(self._score_cascades(rows, served))

    async def _score_cascades(self, rows: Sequence[Row], served: list[Served]) -> list[int]:
        """Score the answers of cascade tiers (per tier together: a verifier vectorised, a
        judge's calls concurrent); the indexes of those below their tier's threshold."""
        by_tier: dict[str, list[int]] = {}
        for i, s in enumerate(served):
            if s.outcome is Outcome.OK and s.tier.cascade is not None:
                by_tier.setdefault(s.tier.name, []).append(i)
        unsure = []
        for name, idx in by_tier.items():
            tier = self.policy.tier(name)
            spec = tier.cascade
            assert spec is not None
            scores: Sequence[float | None]
            if spec.judge is not None:
                judge = self.policy.tier(spec.judge).primary.name
                source = f"judge:{spec.judge}/{judge}"
                scores = await self._judged(spec.judge, rows, served, idx)
            else:
                source = self.check.source(tier)
                done = [served[i].done for i in idx]
                prompts = [rows[i].prompt for i in idx]  # a verifier is CPU work: off the loop
                scores = await asyncio.to_thread(self.check.scores, tier, prompts, done)
            for i, score in zip(idx, scores, strict=True):
                served[i].confidence, served[i].confidence_source = score, source
                if score is not None and score < spec.threshold:
                    unsure.append(i)
                elif score is not None:  # the decision is in route_reason (and the audit)
                    served[i].notes.append(f"{scored(served[i])} ≥ {spec.threshold:.2f}: kept")
        return unsure

    async def _judged(
        self, judge: str, rows: Sequence[Row], served: list[Served], idx: list[int]
    ) -> list[float | None]:
        """The judge tier's grade of each answer (``routing.judge``); its calls are paid by
        the row. No grade (the judge failed or said no score): the answer is kept."""
        if judge not in self._judges:  # a tier this engine cannot reach: not a cascade here
            return [None] * len(idx)
        at = self.policy.tier_names.index(judge)
        asks: dict[int, Row] = {}
        for i in idx:
            purpose = f"cascade-judge-r{served[i].round}"
            ask = judge_row(rows[i], served[i].done.text or "", purpose, at)
            if ask is not None:  # None: the prompt may not go to the judge's tier
                asks[i] = ask
        found = await self._judges[judge]._run(list(asks.values()))
        verdicts = dict(zip(asks, found, strict=True))
        grades: list[float | None] = []
        for i in idx:
            verdict = verdicts.get(i)
            if verdict is None:
                served[i].notes.append(f"judge {judge} not allowed for this prompt: answer kept")
                grades.append(None)
                continue
            served[i].cost += verdict.cost
            served[i].calls += verdict.calls
            grade = grade_of(verdict)
            if grade is None:
                served[i].notes.append(f"judge {judge} gave no grade: answer kept")
            grades.append(grade)
        return grades

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
            served.notes.append(f"{scored(served)}: no dearer tier allowed")
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
