"""Serving a tier batch's prompts: budgets, breakers, rate limits, retries, fallback, cascade.

Per distinct prompt of a routed batch (``Caller.run``), on this process's I/O loop, at most
the tier's ``concurrency`` at a time:

1. **Budget** — reserve the estimate (input tokens × input price + max output tokens ×
   output price) on every scope of ``policy.budgets`` (tenant/day, tenant/month, job,
   job+tier). When it does not fit: ``downgrade`` tries the cheaper tiers the prompt is
   allowed (nearest first), else the row is ``over_budget`` — never sent, resubmittable.
2. **Breaker** — a model whose breaker is open is skipped; the next model of the tier is
   tried, then the tier's ``fallback`` tiers the prompt is allowed; ``fallback_from`` names
   the first model that could not serve. A half-open breaker lets a few probe calls through.
3. **Rate limit** — wait for the model's global rpm/tpm buckets (shared by all workers).
4. **Call** with retries: retryable errors (429, 5xx, timeouts, connection) are retried
   with full-jitter backoff honouring ``Retry-After``, up to ``retry.max_attempts`` and
   within the job's retry budget (``retry.job_budget`` × the job's prompts); permanent ones
   (400, 401/403, 404, content filter) are not. Each attempt passes the breaker and is
   recorded by it (5xx, timeouts and connection errors count as failures; 429 does not — it
   is throttling, which the rate limiter handles).
5. **Settle** the reservation with the reported usage, or release it on failure.
6. **Cascade** — on a tier with ``cascade``, an answer whose confidence
   (:func:`routing.confidence.confidence`) is below ``min_confidence`` is asked again of the
   nearest dearer tier the prompt is allowed; the row keeps the better tier's answer,
   ``escalated_from`` and the first answer's ``confidence``; its cost is both calls.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

import redis

from routing.confidence import confidence
from routing.cost import ZERO, call_cost
from routing.plan import JobContext
from routing.policy import ModelSpec, Policy, TierSpec
from routing.retry import backoff_delay, should_retry
from routing.rules import allowed_tiers
from workers import metrics
from workers.aio import io_loop
from workers.breaker import Breaker, MemoryBreaker, RedisBreaker
from workers.cache import MemoryCache, RedisCache, ResponseCache, cache_key
from workers.ledger import Ledger, MemoryLedger, RedisLedger, budget_scopes
from workers.provider import ChatRequest, Client, Completion, call_once, client_for
from workers.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RateLimitTimeout,
    RedisRateLimiter,
    wait_for,
)
from workers.settings import Settings

RATE_LIMIT_MAX_WAIT_S = 120.0


# ---------------------------------------------------------------- retry budget


class RetryBudget(Protocol):
    def take(self, job_id: str, limit: int) -> bool:
        """One more retry for the job, if fewer than ``limit`` were taken."""
        ...


class MemoryRetryBudget:
    def __init__(self) -> None:
        self._taken: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, job_id: str, limit: int) -> bool:
        with self._lock:
            used = self._taken.get(job_id, 0)
            if used >= limit:
                return False
            self._taken[job_id] = used + 1
            return True


class RedisRetryBudget:
    """``INCR br:retries:<job>``; over the limit the increment is undone and refused."""

    def __init__(self, client: redis.Redis, ttl_s: int = 7 * 86400) -> None:
        self._redis = client
        self._ttl = ttl_s

    def take(self, job_id: str, limit: int) -> bool:
        key = f"br:retries:{job_id}"
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self._ttl)
        used = int(pipe.execute()[0])
        if used > limit:
            self._redis.decr(key)
            return False
        return True


# ---------------------------------------------------------------- guards


@dataclass
class Guards:
    """The shared mechanisms: in Redis for a fleet, in memory for the local executor."""

    ledger: Ledger
    breaker: Breaker
    limiter: RateLimiter
    retries: RetryBudget
    cache: ResponseCache

    @classmethod
    def for_policy(cls, settings: Settings, policy: Policy) -> Guards:
        if not settings.distributed:
            return cls(
                MemoryLedger(),
                MemoryBreaker(policy.breaker),
                MemoryRateLimiter(),
                MemoryRetryBudget(),
                MemoryCache(),
            )
        client = redis.Redis.from_url(settings.state_redis())
        return cls(
            RedisLedger(client, reservation_ttl_s=policy.budgets.reservation_ttl_s),
            RedisBreaker(client, policy.breaker),
            RedisRateLimiter(client),
            RedisRetryBudget(client, settings.job_ttl_s),
            RedisCache(client),
        )


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


class Kind(Enum):
    OK = "ok"
    FAILED = "failed"  # a permanent error, or retries exhausted with nothing to fall back on
    UNAVAILABLE = "unavailable"  # every model of the tier down (breaker open / failing)
    BUDGET = "over_budget"


@dataclass
class Served:
    """The outcome for one prompt: its final answer and everything that led to it."""

    kind: Kind
    done: Completion
    tier: TierSpec
    model: ModelSpec
    cost: Decimal = ZERO
    calls: int = 0
    fallback_from: str | None = None
    escalated_from: str | None = None
    confidence: float | None = None
    cache_hit: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return {Kind.OK: "ok", Kind.BUDGET: "over_budget"}.get(self.kind, "failed")


def _no_call(error: str) -> Completion:
    return Completion(False, None, None, 0, 0, 0.0, 0, error=error)


# ---------------------------------------------------------------- the caller


class Caller:
    """Serves the distinct prompts of one routed batch (see the module doc)."""

    def __init__(
        self, policy: Policy, settings: Settings, guards: Guards, ctx: JobContext, tier: TierSpec
    ) -> None:
        self.policy, self.settings, self.guards, self.ctx, self.tier = (
            policy,
            settings,
            guards,
            ctx,
            tier,
        )
        self._rng = random.Random()
        self._retry_limit = max(1, math.ceil(policy.retry.job_budget * max(ctx.rows_total, 1)))
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
        gate = asyncio.Semaphore(self.tier.concurrency)

        async def one(row: Row) -> Served:
            async with gate:
                return await self._serve(row)

        return list(await asyncio.gather(*(one(r) for r in rows)))

    def _allowed(self, row: Row) -> list[str]:
        names = self.policy.tier_names
        return list(names) if row.allowed is None else allowed_tiers(row.allowed, names)

    async def _serve(self, row: Row) -> Served:
        tier, allowed, names = self.tier, self._allowed(row), self.policy.tier_names
        served = await self._on_tier(row, tier)
        if served.kind is Kind.UNAVAILABLE and served.calls == 0 and not tier.fallback:
            # Only open breakers stood in the way and there is nowhere else to go: wait one
            # cool-down for a half-open probe rather than fail the row on a passing blip.
            await asyncio.sleep(self.policy.breaker.cooldown_s)
            served = await self._on_tier(row, tier)
        if served.kind is Kind.UNAVAILABLE:
            first = served.fallback_from
            for name in tier.fallback:
                if name not in allowed:
                    continue
                other = await self._on_tier(row, self.policy.tier(name))
                if other.kind is not Kind.UNAVAILABLE:
                    served = other
                    break
            served.fallback_from = first
        if served.kind is Kind.BUDGET and self.policy.budgets.on_exhausted == "downgrade":
            here = names.index(served.tier.name)
            for name in reversed(names[:here]):
                if name not in allowed:
                    continue
                other = await self._on_tier(row, self.policy.tier(name))
                if other.kind is not Kind.BUDGET:
                    other.notes.append(f"budget: {served.tier.name} → {name}")
                    served = other
                    break
        if served.kind is Kind.OK and served.tier.cascade is not None:
            served = await self._cascade(row, served, allowed)
        return served

    async def _cascade(self, row: Row, served: Served, allowed: list[str]) -> Served:
        assert served.tier.cascade is not None
        done = served.done
        conf = confidence(done.text, done.finish_reason, done.logprobs)
        served.confidence = conf
        if conf >= served.tier.cascade.min_confidence:
            return served
        names = self.policy.tier_names
        dearer = [n for n in names[names.index(served.tier.name) + 1 :] if n in allowed]
        if not dearer:
            served.notes.append(f"confidence {conf:.3f}: no dearer tier allowed")
            return served
        better = await self._on_tier(row, self.policy.tier(dearer[0]))
        if better.kind is not Kind.OK:
            served.notes.append(f"escalation to {dearer[0]} failed: {better.done.error}")
            served.cost += better.cost
            served.calls += better.calls
            return served
        better.escalated_from = served.tier.name
        better.confidence = conf
        better.cost += served.cost
        better.calls += served.calls
        better.fallback_from = served.fallback_from or better.fallback_from
        better.notes = [
            *served.notes,
            f"confidence {conf:.3f} < {served.tier.cascade.min_confidence:.2f}: "
            f"{served.tier.name} → {dearer[0]}",
            *better.notes,
        ]
        return better

    def _request(self, row: Row, tier: TierSpec) -> ChatRequest:
        wanted = row.max_output_tokens or tier.max_output_tokens
        return ChatRequest(
            row.prompt,
            row.system,
            min(wanted, tier.max_output_tokens),
            logprobs=tier.cascade is not None,
        )

    async def _on_tier(self, row: Row, tier: TierSpec) -> Served:
        """Try the tier's models in order (the first is primary)."""
        request = self._request(row, tier)
        skipped: str | None = None
        last: Served | None = None
        calls = 0
        for model in tier.models:
            target = f"{model.provider}/{model.name}"
            client = self._clients.get((model.provider, model.name))
            if client is None or isinstance(client, Exception):
                skipped = skipped or target
                last = Served(Kind.UNAVAILABLE, _no_call(f"{target}: {client}"), tier, model)
                continue
            hit = self._cached(row, model, request)
            if hit is not None:
                cached, own_cost = hit
                if own_cost is not None:  # this row's own answer: a redelivered task
                    served = Served(Kind.OK, cached, tier, model, cost=own_cost)
                    served.calls = calls + cached.attempts
                else:
                    served = Served(Kind.OK, cached, tier, model, calls=calls, cache_hit=True)
                served.fallback_from = skipped
                return served
            key = f"{self.ctx.job_id}/{row.ref}/{tier.name}/{model.name}"  # never the id
            tokens = row.input_tokens + request.max_tokens
            estimate = call_cost(model, row.input_tokens, request.max_tokens)
            scopes = budget_scopes(
                self.policy.budgets, row.tenant, self.ctx.job_id, tier.name, datetime.now(UTC)
            )
            if not self.guards.ledger.reserve(key, scopes, estimate, tokens):
                error = f"over budget: ${estimate} for {tier.name} does not fit a budget cap"
                return Served(Kind.BUDGET, _no_call(error), tier, model, calls=calls)
            done = await self._call(client, model, target, request, row, tier.name)
            calls += done.attempts
            if done.ok:
                cost = call_cost(model, done.input_tokens, done.output_tokens)
                self.guards.ledger.settle(
                    key, cost, done.input_tokens + done.output_tokens, scopes=scopes
                )
                metrics.observe_cost(
                    tier.name, row.tenant, cost, done.input_tokens, done.output_tokens
                )
                metrics.observe_budgets(self.guards.ledger, scopes)
                self._remember(row, model, request, done, cost)
                served = Served(Kind.OK, done, tier, model, cost=cost, calls=calls)
                served.fallback_from = skipped
                return served
            self.guards.ledger.release(key)
            if not done.retryable:
                return Served(Kind.FAILED, done, tier, model, calls=calls, fallback_from=skipped)
            skipped = skipped or target
            last = Served(Kind.UNAVAILABLE, done, tier, model, calls=calls)
        assert last is not None
        last.fallback_from = skipped
        last.calls = calls
        return last

    def _cache_key(self, row: Row, model: ModelSpec, request: ChatRequest) -> str:
        return cache_key(
            self.policy.cache,
            row.tenant,
            model,
            request.max_tokens,
            request.logprobs,
            request.system,
            request.prompt,
        )

    def _cached(
        self, row: Row, model: ModelSpec, request: ChatRequest
    ) -> tuple[Completion, Decimal | None] | None:
        """A cached answer for this request, and — when it is this very row's answer from
        an earlier delivery of the same job (a redelivered task) — the cost it was paid and
        settled at, so the row keeps it (the ledger holds that settlement) instead of
        counting as a free cache hit."""
        if not self.policy.cache.enabled:
            return None
        hit = self.guards.cache.get(self._cache_key(row, model, request))
        if hit is None:
            return None
        own = hit.get("job_id") == self.ctx.job_id and hit.get("row") == row.ref
        logprobs = hit.get("logprobs")
        done = Completion(
            ok=True,
            text=hit["text"],
            finish_reason=hit["finish_reason"],
            input_tokens=int(hit["input_tokens"]),
            output_tokens=int(hit["output_tokens"]),
            latency_ms=0.0,
            attempts=int(hit.get("attempts", 1)) if own else 0,
            logprobs=tuple(logprobs) if logprobs is not None else None,
        )
        return done, (Decimal(hit["cost_usd"]) if own and "cost_usd" in hit else None)

    def _remember(
        self, row: Row, model: ModelSpec, request: ChatRequest, done: Completion, cost: Decimal
    ) -> None:
        if not self.policy.cache.enabled or done.finish_reason == "length":
            return  # a truncated answer is not worth reusing
        value = {
            "text": done.text,
            "finish_reason": done.finish_reason,
            "input_tokens": done.input_tokens,
            "output_tokens": done.output_tokens,
            "logprobs": list(done.logprobs) if done.logprobs is not None else None,
            "job_id": self.ctx.job_id,
            "row": row.ref,
            "cost_usd": str(cost),
            "attempts": done.attempts,
        }
        self.guards.cache.put(self._cache_key(row, model, request), value, self.policy.cache.ttl_s)

    async def _call(
        self,
        client: Any,
        model: ModelSpec,
        target: str,
        request: ChatRequest,
        row: Row,
        tier: str,
    ) -> Completion:
        """Attempts through the breaker and the rate limiter, with retries."""
        attempt = 0
        started = asyncio.get_running_loop().time()
        while True:
            tokens = row.input_tokens + request.max_tokens
            try:  # before the breaker: a probe must not hold its slot while waiting here
                await wait_for(
                    self.guards.limiter,
                    target,
                    model.rpm,
                    model.tpm,
                    tokens,
                    max_wait_s=RATE_LIMIT_MAX_WAIT_S,
                )
            except RateLimitTimeout as exc:
                metrics.observe_skipped(target, tier, "rate_limit")
                done = replace(_no_call(f"{target}: {exc}"), retryable=True, attempts=attempt)
                break
            permit = self.guards.breaker.acquire(target)
            if permit is None:
                metrics.observe_skipped(target, tier, "breaker_open")
                done = _no_call(f"{target}: circuit breaker open")
                done = replace(done, retryable=True, attempts=attempt)
                break
            attempt += 1
            done = await call_once(client, model.name, request, attempt)
            outcome = "ok" if done.ok else "retryable" if done.retryable else "permanent"
            metrics.observe_call(
                target,
                tier,
                done.latency_ms / 1000,
                outcome,
                None if done.ok else metrics.error_class(done.status, done.retryable, done.error),
            )
            outage = not done.ok and done.retryable and done.status != 429
            self.guards.breaker.record(target, not outage, permit == "probe")
            if done.ok or not done.retryable or not should_retry(attempt, self.policy.retry):
                break
            if not self.guards.retries.take(self.ctx.job_id, self._retry_limit):
                done = replace(done, error=f"{done.error} (job retry budget exhausted)")
                break
            await asyncio.sleep(
                backoff_delay(attempt, self.policy.retry, done.retry_after, self._rng)
            )
        elapsed = (asyncio.get_running_loop().time() - started) * 1000
        return replace(done, latency_ms=elapsed)
