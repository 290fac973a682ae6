"""One event loop per process for provider I/O, and the clients that live on it.

Celery tasks and the local executor's threads are synchronous; they hand coroutines to
this process's I/O loop (a daemon thread) instead of ``asyncio.run`` per batch, so HTTP
clients, their connection pools and TLS contexts are built once per process and reused
by every batch (a new client per batch cost ~55 ms of TLS setup, measured in the
pipeline benchmark). The loop belongs to the process's resources (workers/process.py):
created lazily, and again in a forked child, so a prefork Celery child never inherits its
parent's loop. This module is how code without a Runtime in hand reaches it.

Nothing on this loop may block: the guards' Redis round trips (ledger, breaker, rate
limiter, cache, retry budget) go through :class:`LoopRedis` — a ``redis.asyncio`` client
per process *and* per event loop, made on first use on that loop (its connections belong
to the loop that opened them, and a forked child opens its own) and closed with the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import redis.asyncio

from workers.process import IoLoop, this_process

__all__ = ["REDIS_MAX_CONNECTIONS", "IoLoop", "LoopRedis", "io_loop", "loop_local"]

T = TypeVar("T")
REDIS_MAX_CONNECTIONS = 64  # per process and loop; a command waits for a free connection


def io_loop() -> IoLoop:
    """This process's I/O loop (a new one after a fork)."""
    return this_process().io_loop()


def loop_local(key: Hashable, factory: Callable[[], T], close: Callable[[T], Awaitable[Any]]) -> T:
    """The object ``factory`` made for ``key`` on the running event loop in this process
    (made on first use; ``close`` is awaited when an :class:`IoLoop` closes)."""
    return this_process().loop_objects.get(key, factory, close)


class LoopRedis:
    """A Redis URL as async code of this process reaches it: :meth:`client` is the
    ``redis.asyncio`` client of the running event loop, one per process and loop, with a
    pool of at most ``max_connections``. Cheap to copy into each guard; no connection is
    opened before the first command."""

    def __init__(self, url: str, *, max_connections: int = REDIS_MAX_CONNECTIONS) -> None:
        self.url = url
        self._max = max_connections

    def client(self) -> redis.asyncio.Redis:
        """This loop's client (call it on the loop, per operation: it is a dict lookup)."""
        return loop_local(("redis", self.url, self._max), self._make, _close_redis)

    def _make(self) -> redis.asyncio.Redis:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url, max_connections=self._max, decode_responses=True
        )
        return redis.asyncio.Redis.from_pool(pool)

    def __repr__(self) -> str:
        return "LoopRedis(<url>)"  # the URL may hold a password


async def _close_redis(client: redis.asyncio.Redis) -> None:
    await client.aclose()
