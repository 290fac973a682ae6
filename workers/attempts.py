"""The realtime attempt loop: one prompt on one model, retried by the policy.

Each attempt, in order:

1. **rate limit** — wait for the model's global rpm / tpm buckets (shared by every worker;
   before the breaker, so a probe never holds its slot while it waits); a wait longer than
   :data:`RATE_LIMIT_MAX_WAIT_S` gives up with a retryable failure and no call;
2. **breaker** — an open breaker gives up at once (retryable, no call: the caller moves on
   to the next model or tier); a half-open one lets this call through as a probe. A tier
   batch asks the breaker (Redis) once per target and then trusts what each recorded
   outcome answers (:class:`BreakerView`): a breaker seen closed is not asked again while
   its outcomes keep saying closed, for at most :data:`BREAKER_VIEW_S`;
3. **call** — one request (:func:`workers.provider.call_once`), classified there;
4. **record** the outcome with the breaker: 5xx, 529, timeouts and connection errors are
   failures; 429 is not (throttling, which the rate limiter handles), nor is a 4xx that is
   the request's own fault;
5. **retry** a retryable failure while ``retry.max_attempts`` allows and the job's retry
   budget has one to give, after a full-jitter backoff whose floor is the provider's
   ``Retry-After`` and whose cap is ``retry.max_delay_s`` (:mod:`routing.retry`).

This loop is realtime mode's alone: provider batch mode (issue 15) submits instead of
calling, so it shares the accounting of ``workers/calls.py`` but not this module.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace

from routing.policy import ModelSpec, RetrySpec
from routing.retry import backoff_delay, should_retry
from workers import metrics
from workers.guards.breaker import CLOSED, PROBE, Breaker
from workers.guards.ratelimit import RateLimiter, RateLimitTimeout, wait_for
from workers.guards.retry_budget import RetryBudget
from workers.provider import ChatRequest, Client, Completion, call_once

RATE_LIMIT_MAX_WAIT_S = 120.0
BREAKER_VIEW_S = 1.0  # longest a batch calls a target on a "closed" it has not re-read


def no_call(error: str, retryable: bool = False, attempts: int = 0) -> Completion:
    """The outcome of a call that was never made (budget, breaker, rate limit, no client)."""
    return Completion(False, None, None, 0, 0, 0.0, attempts, error=error, retryable=retryable)


class BreakerView:
    """A tier batch's view of its targets' breakers: one ``acquire`` per target (callers
    that arrive while it is in flight share its answer, unless it granted a probe), then a
    target last seen closed is called without asking again — until an outcome recorded
    for it says the breaker is no longer closed (the record script returns the state
    after it: a breaker another worker opened is seen at this batch's next outcome for
    that target), or :data:`BREAKER_VIEW_S` has passed since it was last seen closed. An
    open or half-open breaker is asked every time (half-open hands out probe slots)."""

    def __init__(self, breaker: Breaker, clock: Callable[[], float] = time.monotonic) -> None:
        self._breaker, self._clock = breaker, clock
        self._closed_at: dict[str, float] = {}
        self._asking: dict[str, asyncio.Task[str | None]] = {}

    async def acquire(self, target: str) -> str | None:
        seen = self._closed_at.get(target)
        if seen is not None and self._clock() - seen < BREAKER_VIEW_S:
            return CLOSED
        asking = self._asking.get(target)
        if asking is not None:
            permit = await asyncio.shield(asking)
            if permit != PROBE:  # closed or open, as just read; a probe was that caller's
                return permit
        return await self._ask(target)

    async def _ask(self, target: str) -> str | None:
        asking = asyncio.ensure_future(self._breaker.acquire(target))
        self._asking[target] = asking
        try:
            permit = await asking
        finally:
            if self._asking.get(target) is asking:
                del self._asking[target]
        self._saw(target, permit == CLOSED)
        return permit

    async def record(self, target: str, ok: bool, probe: bool) -> None:
        self._saw(target, await self._breaker.record(target, ok, probe))

    def _saw(self, target: str, closed: bool) -> None:
        if closed:
            self._closed_at[target] = self._clock()
        else:
            self._closed_at.pop(target, None)


class Attempts:
    """The attempt loop of one tier batch: its guards, the policy's retry rule, the job's
    retry budget (``retry_limit`` retries in the whole job)."""

    def __init__(
        self,
        limiter: RateLimiter,
        breaker: Breaker,
        retries: RetryBudget,
        retry: RetrySpec,
        job_id: str,
        retry_limit: int,
    ) -> None:
        self._limiter, self._breaker, self._retries = limiter, BreakerView(breaker), retries
        self._retry, self._job_id, self._retry_limit = retry, job_id, retry_limit
        self._rng = random.Random()

    async def call(
        self, client: Client, model: ModelSpec, request: ChatRequest, tokens: int, tier: str
    ) -> Completion:
        """Attempts until one succeeds, fails permanently, or may not be retried; the
        result's ``attempts`` counts the provider calls made and ``latency_ms`` spans them
        all (waits and backoff included)."""
        target = f"{model.provider}/{model.name}"
        attempt = 0
        started = asyncio.get_running_loop().time()
        while True:
            blocked = await self._admit(target, model, tokens, tier, attempt)
            if blocked is not None:
                done = blocked
                break
            permit = await self._breaker.acquire(target)
            if permit is None:
                metrics.observe_skipped(target, tier, "breaker_open")
                done = no_call(f"{target}: circuit breaker open", True, attempt)
                break
            attempt += 1
            done = await call_once(client, model.name, request, attempt, reasoning=model.reasoning)
            _observe(target, tier, done)
            outage = not done.ok and done.retryable and done.status != 429
            await self._breaker.record(target, not outage, permit == "probe")
            if done.ok or not done.retryable or not should_retry(attempt, self._retry):
                break
            if not await self._retries.take(self._job_id, self._retry_limit):
                done = replace(done, error=f"{done.error} (job retry budget exhausted)")
                break
            await asyncio.sleep(backoff_delay(attempt, self._retry, done.retry_after, self._rng))
        elapsed = (asyncio.get_running_loop().time() - started) * 1000
        return replace(done, latency_ms=elapsed)

    async def _admit(
        self, target: str, model: ModelSpec, tokens: int, tier: str, attempt: int
    ) -> Completion | None:
        """Wait for the rate limiter; the no-call outcome when the wait is too long."""
        try:
            await wait_for(
                self._limiter,
                target,
                model.rpm,
                model.tpm,
                tokens,
                max_wait_s=RATE_LIMIT_MAX_WAIT_S,
            )
        except RateLimitTimeout as exc:
            metrics.observe_skipped(target, tier, "rate_limit")
            return no_call(f"{target}: {exc}", True, attempt)
        return None


def _observe(target: str, tier: str, done: Completion) -> None:
    outcome = "ok" if done.ok else "retryable" if done.retryable else "permanent"
    error = None if done.ok else metrics.error_class(done.status, done.retryable, done.error)
    metrics.observe_call(target, tier, done.latency_ms / 1000, outcome, error)
