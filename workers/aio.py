"""One event loop per process for provider I/O, and the clients that live on it.

Celery tasks and the local executor's threads are synchronous; they hand coroutines to
this process's I/O loop (a daemon thread) instead of ``asyncio.run`` per batch, so HTTP
clients, their connection pools and TLS contexts are built once per process and reused
by every batch (a new client per batch cost ~55 ms of TLS setup, measured in the
pipeline benchmark). The loop is created lazily and again after a fork, so a prefork
Celery child never inherits its parent's loop.

Nothing on this loop may block: the guards' Redis round trips (ledger, breaker, rate
limiter, cache, retry budget) go through :class:`LoopRedis` — a ``redis.asyncio`` client
per process *and* per event loop, made on first use on that loop (its connections belong
to the loop that opened them, and a forked child opens its own) and closed with the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, TypeVar

import redis.asyncio

T = TypeVar("T")
REDIS_MAX_CONNECTIONS = 64  # per process and loop; a command waits for a free connection


class IoLoop:
    """An event loop running forever in a daemon thread, with a per-loop object cache."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="io-loop", daemon=True)
        self._thread.start()
        self._cache: dict[Hashable, Any] = {}
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def cached(self, key: Hashable, factory: Callable[[], T], close: Callable[[T], Any]) -> T:
        """The object built by ``factory`` for ``key`` on this loop (built once)."""
        with self._lock:
            if key not in self._cache:
                value = self.run(_build(factory))
                self._cache[key] = value
                self._closers.append(lambda: close(value))
            return self._cache[key]  # type: ignore[no-any-return]

    def close(self) -> None:
        async def close_all() -> None:
            for closer in [*self._closers, *_loop_closers(self.loop)]:
                with contextlib.suppress(Exception):
                    await closer()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


async def _build(factory: Callable[[], T]) -> T:
    return factory()  # constructed inside the loop, so sessions bind to it


_current: tuple[int, IoLoop] | None = None
_guard = threading.Lock()


def io_loop() -> IoLoop:
    """This process's I/O loop (a new one after a fork)."""
    global _current
    with _guard:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), IoLoop())
            atexit.register(_current[1].close)
        return _current[1]


# ---------------------------------------------------------------- objects of one loop

# loop → {(pid, key): (object, its async close)}: what loop_local made on each loop
_Slot = tuple[int, Hashable]
_on_loop: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_Slot, tuple[Any, Callable[[], Awaitable[Any]]]]
] = weakref.WeakKeyDictionary()
_on_loop_lock = threading.Lock()


def loop_local(key: Hashable, factory: Callable[[], T], close: Callable[[T], Awaitable[Any]]) -> T:
    """The object ``factory`` made for ``key`` on the running event loop in this process
    (made on first use; ``close`` is awaited when an :class:`IoLoop` closes)."""
    loop = asyncio.get_running_loop()
    slot: _Slot = (os.getpid(), key)
    with _on_loop_lock:
        objects = _on_loop.setdefault(loop, {})
        if slot not in objects:
            value = factory()
            objects[slot] = (value, lambda: close(value))
        return objects[slot][0]  # type: ignore[no-any-return]


def _loop_closers(loop: asyncio.AbstractEventLoop) -> list[Callable[[], Awaitable[Any]]]:
    with _on_loop_lock:
        objects = _on_loop.pop(loop, {})
    return [closer for (pid, _), (_, closer) in objects.items() if pid == os.getpid()]


def _forget_after_fork() -> None:
    """In a forked child: the parent's loops and their clients are not this process's."""
    global _on_loop_lock
    _on_loop_lock = threading.Lock()
    _on_loop.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


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
