"""The guards a tier batch is served under, in one bundle (:class:`Guards`): the budget
ledger, circuit breakers, global rate limits, the job's retry budget and the response cache.

For a fleet they live in Redis, shared by every worker; for the local executor, in memory.
The serving engine awaits them on this process's I/O loop: the Redis backends make their
round trips on a ``redis.asyncio`` client of that loop (``workers.aio.LoopRedis``: one per
process and loop, made on first use, so a forked Celery child opens its own), and only the
operators' synchronous reads (the ledger's ``usage``, a breaker's ``state``) use a blocking
client, outside the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.policy import Policy
from workers import connections
from workers.aio import LoopRedis
from workers.guards.breaker import Breaker, MemoryBreaker, RedisBreaker
from workers.guards.cache import MemoryCache, RedisCache, ResponseCache
from workers.guards.ledger import Ledger, MemoryLedger
from workers.guards.ledger_redis import RedisLedger
from workers.guards.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from workers.guards.retry_budget import MemoryRetryBudget, RedisRetryBudget, RetryBudget
from workers.settings import Settings


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
        url = settings.state_redis()
        client = connections.state_client(settings, decode_responses=False)  # operators' reads
        aio = LoopRedis(url)
        return cls(
            RedisLedger(client, reservation_ttl_s=policy.budgets.reservation_ttl_s, aio=aio),
            RedisBreaker(client, policy.breaker, aio=aio),
            RedisRateLimiter(aio),
            RedisRetryBudget(aio, settings.job_ttl_s),
            RedisCache(aio),
        )
