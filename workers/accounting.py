"""What a provider call asks, costs and leaves behind, however it is made: the part of the
serving engine that realtime calls (``workers/calls.py``) and provider batch mode
(``workers/batches/``) share.

Per row and model: the request (:meth:`Accounting.request`: the row's output capped at the
tier's); a cached answer (``workers/cache.py``; a tier batch's first model is read for every
row at once, :meth:`Accounting.prefetch`); the budget reservation (:meth:`reserve`: the
estimate on every scope of ``policy.budgets`` under a key of the job's own — chunk, input
row, tier, model, never the customer's ``prompt_id``); and after the call, the reservation
settled at the reported usage, the answer cached and the metrics observed (:meth:`settle`),
or the reservation released (:meth:`release`). Every Redis round trip here is awaited on the
engine's I/O loop; the independent writes after a call go concurrently. Provider batch mode
reserves and settles a provider batch's rows at once (:meth:`reserve_many`,
:meth:`settle_many`: one ledger call and one cache round trip per few hundred rows).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from routing.cost import call_cost
from routing.plan import JobContext
from routing.policy import ModelSpec, Policy, TierSpec
from routing.resilience import Scope, budget_scopes
from workers import metrics
from workers.guards.bundle import Guards
from workers.guards.cache import cache_key
from workers.guards.ledger import Hold
from workers.provider import ChatRequest, Completion


class Prompt(Protocol):
    """What the accounting reads of a row (``workers.calls.Row``)."""

    @property
    def ref(self) -> str: ...  # "c<chunk>/r<input row>": the ledger key's and cache's owner
    @property
    def prompt(self) -> str: ...
    @property
    def system(self) -> str | None: ...
    @property
    def max_output_tokens(self) -> int | None: ...
    @property
    def tenant(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...


@dataclass(frozen=True)
class Reservation:
    """A call's budget reservation: its ledger key, scopes, estimate and tokens."""

    key: str
    scopes: list[Scope]
    estimate: Decimal
    tokens: int


class Accounting:
    """The accounting of one tier batch's calls (see the module doc)."""

    def __init__(self, policy: Policy, guards: Guards, ctx: JobContext) -> None:
        self.policy, self.guards, self.ctx = policy, guards, ctx
        self._prefetched: dict[str, dict[str, Any] | None] = {}
        self._budgets_read = float("-inf")  # when the budget metrics were last refreshed
        self._scopes: dict[tuple[str, str, datetime], list[Scope]] = {}

    def request(self, row: Prompt, tier: TierSpec) -> ChatRequest:
        """What ``row`` asks of a model of ``tier``: its output capped at the tier's."""
        wanted = row.max_output_tokens or tier.max_output_tokens
        return ChatRequest(
            row.prompt,
            row.system,
            min(wanted, tier.max_output_tokens),
            logprobs=tier.cascade is not None,
        )

    # ------------------------------------------------------------ cache

    def _cache_key(self, row: Prompt, model: ModelSpec, request: ChatRequest) -> str:
        return cache_key(
            self.policy.cache,
            row.tenant,
            model,
            request.max_tokens,
            request.logprobs,
            request.system,
            request.prompt,
        )

    async def prefetch(self, rows: Sequence[Prompt], tier: TierSpec) -> None:
        """Read the cached answers of every row on ``tier``'s first model in one round
        trip; :meth:`cached` then takes each from here once (a later look-up of the same
        key, or of another model, reads the cache again)."""
        if not self.policy.cache.enabled or not rows:
            return
        model = tier.primary
        keys = [self._cache_key(r, model, self.request(r, tier)) for r in rows]
        self._prefetched = dict(zip(keys, await self.guards.cache.get_many(keys), strict=True))

    async def cached(
        self, row: Prompt, model: ModelSpec, request: ChatRequest
    ) -> tuple[Completion, Decimal | None] | None:
        """A cached answer for this request, and — when it is this very row's answer from
        an earlier delivery of the same job (a redelivered task) — the cost it was paid and
        settled at, so the row keeps it (the ledger holds that settlement) instead of
        counting as a free cache hit."""
        if not self.policy.cache.enabled:
            return None
        key = self._cache_key(row, model, request)
        if key in self._prefetched:
            hit = self._prefetched.pop(key)
        else:
            (hit,) = await self.guards.cache.get_many([key])
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
            reasoning_tokens=hit.get("reasoning_tokens"),
            cached_input_tokens=hit.get("cached_input_tokens"),
            cache_write_tokens=hit.get("cache_write_tokens"),
            latency_ms=0.0,
            attempts=int(hit.get("attempts", 1)) if own else 0,
            logprobs=tuple(logprobs) if logprobs is not None else None,
        )
        return done, (Decimal(hit["cost_usd"]) if own and "cost_usd" in hit else None)

    def _entry(
        self, row: Prompt, model: ModelSpec, request: ChatRequest, done: Completion, cost: Decimal
    ) -> tuple[str, dict[str, Any]] | None:
        """The cache entry (key, value) an answer leaves, or None when it is not cached."""
        if not self.policy.cache.enabled or done.finish_reason == "length":
            return None  # a truncated answer is not worth reusing
        value = {
            "text": done.text,
            "finish_reason": done.finish_reason,
            "input_tokens": done.input_tokens,
            "output_tokens": done.output_tokens,
            "reasoning_tokens": done.reasoning_tokens,
            "cached_input_tokens": done.cached_input_tokens,
            "cache_write_tokens": done.cache_write_tokens,
            "logprobs": list(done.logprobs) if done.logprobs is not None else None,
            "job_id": self.ctx.job_id,
            "row": row.ref,
            "cost_usd": str(cost),
            "attempts": done.attempts,
        }
        return self._cache_key(row, model, request), value

    async def _remember(
        self, row: Prompt, model: ModelSpec, request: ChatRequest, done: Completion, cost: Decimal
    ) -> None:
        entry = self._entry(row, model, request, done, cost)
        if entry is not None:
            await self.guards.cache.put(*entry, self.policy.cache.ttl_s)

    # ------------------------------------------------------------ budget

    def reservation(
        self,
        row: Prompt,
        tier: TierSpec,
        model: ModelSpec,
        request: ChatRequest,
        at: datetime,
        *,
        batch: bool = False,
    ) -> Reservation:
        """The reservation a call made at ``at`` holds (its key and scopes are a function of
        the row, tier, model and time: a provider batch's collector rebuilds them)."""
        scopes = self.scopes(row.tenant, tier, at)
        return Reservation(
            key=self.reservation_key(row, tier, model),
            scopes=scopes,
            estimate=call_cost(model, row.input_tokens, request.max_tokens, batch=batch),
            tokens=row.input_tokens + request.max_tokens,
        )

    def reservation_key(self, row: Prompt, tier: TierSpec, model: ModelSpec) -> str:
        """The ledger key of ``row``'s call on ``model`` of ``tier``: the job's own names
        (chunk, input row), never the customer's ``prompt_id``."""
        return f"{self.ctx.job_id}/{row.ref}/{tier.name}/{model.name}"

    def scopes(self, tenant: str, tier: TierSpec, at: datetime) -> list[Scope]:
        """The budget scopes of a call of ``tenant`` on ``tier`` at ``at`` (remembered: a
        provider batch's rows share one ``at``)."""
        memo = (tenant, tier.name, at)
        found = self._scopes.get(memo)
        if found is None:
            if len(self._scopes) >= 64:
                self._scopes.clear()
            found = budget_scopes(self.policy.budgets, tenant, self.ctx.job_id, tier.name, at)
            self._scopes[memo] = found
        return found

    async def reserve(
        self,
        row: Prompt,
        tier: TierSpec,
        model: ModelSpec,
        request: ChatRequest,
        *,
        batch: bool = False,
        ttl_s: float | None = None,
    ) -> tuple[Reservation, bool]:
        """The call's reservation (at the batch price when ``batch``, held ``ttl_s``), and
        whether it fit every budget cap."""
        now = datetime.now(UTC).replace(microsecond=0)  # calls of one second share scopes
        held = self.reservation(row, tier, model, request, now, batch=batch)
        ledger = self.guards.ledger
        fits = await ledger.reserve(held.key, held.scopes, held.estimate, held.tokens, ttl_s)
        return held, fits

    async def settle(
        self,
        held: Reservation,
        row: Prompt,
        tier: TierSpec,
        model: ModelSpec,
        request: ChatRequest,
        done: Completion,
        *,
        batch: bool = False,
    ) -> Decimal:
        """Settle a successful call at its reported usage (at the batch price when
        ``batch``) and cache its answer (both at once); observe its cost. Returns the cost."""
        cost = done.cost(model, batch=batch)
        tokens = done.input_tokens + done.output_tokens
        await asyncio.gather(
            self.guards.ledger.settle(held.key, cost, tokens, scopes=held.scopes),
            self._remember(row, model, request, done, cost),
        )
        metrics.observe_cost(tier.name, row.tenant, cost, done.input_tokens, done.output_tokens)
        await self._observe_budgets(held.scopes)
        return cost

    async def reserve_many(
        self,
        rows: Sequence[Prompt],
        tier: TierSpec,
        model: ModelSpec,
        at: datetime,
        *,
        ttl_s: float,
    ) -> list[bool]:
        """Each row's reservation at the batch price as made at ``at`` (held ``ttl_s``), in
        order — each fits or not after the rows before it: whether it fit every cap."""
        fits = [False] * len(rows)
        for tenant, index in _by_tenant(rows).items():
            holds = [self._hold(rows[i], tier, model, at) for i in index]
            scopes = self.scopes(tenant, tier, at)
            done = await self.guards.ledger.reserve_many(holds, scopes, ttl_s)
            for i, fit in zip(index, done, strict=True):
                fits[i] = fit
        return fits

    def _hold(self, row: Prompt, tier: TierSpec, model: ModelSpec, at: datetime) -> Hold:
        held = self.reservation(row, tier, model, self.request(row, tier), at, batch=True)
        return Hold(held.key, held.estimate, held.tokens)

    async def settle_many(
        self,
        answers: Sequence[tuple[Prompt, Completion]],
        tier: TierSpec,
        model: ModelSpec,
        at: datetime,
    ) -> list[Decimal]:
        """:meth:`settle` of provider batch answers reserved at ``at`` (:meth:`reserve_many`),
        at the batch price: the ledger, the cache and the metrics in a few round trips.
        Returns each answer's cost."""
        costs = [done.cost(model, batch=True) for _, done in answers]
        entries = []
        for tenant, index in _by_tenant([row for row, _ in answers]).items():
            holds = []
            for i in index:
                row, done = answers[i]
                key = self.reservation_key(row, tier, model)
                holds.append(Hold(key, costs[i], done.input_tokens + done.output_tokens))
                if self.policy.cache.enabled:
                    entry = self._entry(row, model, self.request(row, tier), done, costs[i])
                    if entry is not None:
                        entries.append(entry)
            scopes = self.scopes(tenant, tier, at)
            await self.guards.ledger.settle_many(holds, scopes)
            metrics.observe_cost(
                tier.name,
                tenant,
                sum((costs[i] for i in index), Decimal(0)),
                sum(answers[i][1].input_tokens for i in index),
                sum(answers[i][1].output_tokens for i in index),
            )
            await self._observe_budgets(scopes)
        if entries:
            await self.guards.cache.put_many(entries, self.policy.cache.ttl_s)
        return costs

    async def release(self, held: Reservation) -> None:
        await self.guards.ledger.release(held.key, held.scopes)

    async def _observe_budgets(self, scopes: list[Scope]) -> None:
        """The budget-remaining metric of the capped scopes, at most every
        ``metrics.BUDGET_REFRESH_S``; the ledger's ``usage`` read is synchronous (a Redis
        round trip), so it runs in a worker thread, never on this loop."""
        now = time.monotonic()
        if now - self._budgets_read < metrics.BUDGET_REFRESH_S:
            return
        if all(s.usd is None for s in scopes):
            return
        self._budgets_read = now
        await asyncio.to_thread(metrics.observe_budgets, self.guards.ledger, scopes)


def _by_tenant(rows: Sequence[Prompt]) -> dict[str, list[int]]:
    """The positions of ``rows`` by tenant, in order."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.tenant, []).append(i)
    return groups
