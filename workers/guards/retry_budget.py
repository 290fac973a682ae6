"""The job's retry budget: at most ``retry.job_budget`` × the job's input rows retries of
provider calls in the whole job, every worker together, so a provider failing everything
cannot multiply a night's calls (docs/resilience.md).

Two backends implement :class:`RetryBudget`: :class:`RedisRetryBudget` (a counter per job,
``br:retries:<job>`` built by ``keys.retries``, on this process's ``redis.asyncio`` client
of the running loop) and
:class:`MemoryRetryBudget` (one process: the local executor, tests). Both are awaited on
the I/O loop; neither blocks it.
"""

from __future__ import annotations

import threading
from typing import Protocol

from workers import keys
from workers.aio import LoopRedis


class RetryBudget(Protocol):
    async def take(self, job_id: str, limit: int) -> bool:
        """One more retry for the job, if fewer than ``limit`` were taken."""
        ...


class MemoryRetryBudget:
    def __init__(self) -> None:
        self._taken: dict[str, int] = {}
        self._lock = threading.Lock()

    async def take(self, job_id: str, limit: int) -> bool:
        with self._lock:
            used = self._taken.get(job_id, 0)
            if used >= limit:
                return False
            self._taken[job_id] = used + 1
            return True


class RedisRetryBudget:
    """``INCR br:retries:<job>``; over the limit the increment is undone and refused."""

    def __init__(self, aio: LoopRedis, ttl_s: int = 7 * 86400, prefix: str = keys.RETRIES) -> None:
        self._aio = aio
        self._ttl = ttl_s
        self._prefix = prefix

    async def take(self, job_id: str, limit: int) -> bool:
        key = keys.retries(job_id, self._prefix)
        client = self._aio.client()
        async with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self._ttl)
            used = int((await pipe.execute())[0])
        if used > limit:
            await client.decr(key)
            return False
        return True
