"""This process's resources: the provider I/O loop, the Redis clients, the objects made per
event loop, and whatever else a process builds once and shares — one
:class:`ProcessResources` per process (:func:`this_process`), made on first use.

The :class:`~workers.runtime.Runtime` references it (its ``process`` field); the modules that
reach it without a Runtime in hand do so through thin accessors: workers/aio.py
(``io_loop()``, ``loop_local``, ``LoopRedis``), workers/connections.py (the sync Redis
clients) and workers/memos.py (the routing memos, kept with :meth:`ProcessResources.shared`).

Fork safety lives with it: ProcessResources registers with the process's one after-fork
hook (routing/forks.py), and in a forked child (Celery's prefork pool) it takes new locks
and forgets its parent's loop, clients, per-loop objects and shared objects — without
closing them, they are the parent's — so the child opens its own on first use (redis-py's
pools also check the pid, so a connection is never shared across processes). The routing
memos a parent's Runtime may still hold empty themselves through the same hook.
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

import redis

from routing import forks

T = TypeVar("T")
Closer = Callable[[], Awaitable[Any]]


class LoopObjects:
    """What :func:`workers.aio.loop_local` made on each event loop, with how to close it:
    one object per key and loop, made on first use on that loop (its connections belong to
    the loop that opened them). An :class:`IoLoop` closes its own when it closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, tuple[Any, Closer]]
        ] = weakref.WeakKeyDictionary()

    def get(
        self, key: Hashable, factory: Callable[[], T], close: Callable[[T], Awaitable[Any]]
    ) -> T:
        """The object ``factory`` made for ``key`` on the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            objects = self._by_loop.setdefault(loop, {})
            if key not in objects:
                value = factory()
                objects[key] = (value, lambda: close(value))
            return objects[key][0]  # type: ignore[no-any-return]

    def pop_closers(self, loop: asyncio.AbstractEventLoop) -> list[Closer]:
        """Forget what was made on ``loop``; the closers of those objects."""
        with self._lock:
            objects = self._by_loop.pop(loop, {})
        return [closer for _, closer in objects.values()]


class IoLoop:
    """An event loop running forever in a daemon thread, with a per-loop object cache."""

    def __init__(self, objects: LoopObjects | None = None) -> None:
        self._objects = objects if objects is not None else this_process().loop_objects
        self._pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="io-loop", daemon=True)
        self._thread.start()
        self._cache: dict[Hashable, Any] = {}
        self._closers: list[Closer] = []
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
        """Close what was made on the loop, then stop it (in the process that started it:
        a forked child's copy has no thread, and its clients are the parent's)."""
        if os.getpid() != self._pid:
            return

        async def close_all() -> None:
            for closer in [*self._closers, *self._objects.pop_closers(self.loop)]:
                with contextlib.suppress(Exception):
                    await closer()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


async def _build(factory: Callable[[], T]) -> T:
    return factory()  # constructed inside the loop, so sessions bind to it


_ClientKey = tuple[str, bool, float | None]


class ProcessResources:
    """One process's I/O loop, Redis clients, per-loop objects and shared objects."""

    def __init__(self) -> None:
        self.reset_after_fork()  # the initial state is a child's
        forks.register(self)

    def reset_after_fork(self) -> None:
        """Forget the parent's loop, clients and objects (not closed: they are its), with
        new locks (another thread may have held one at the fork)."""
        self._lock = threading.RLock()  # a shared object's factory may ask for a client
        self._loop: IoLoop | None = None
        self._clients: dict[_ClientKey, redis.Redis] = {}
        self._shared: dict[Hashable, Any] = {}
        self.loop_objects = LoopObjects()

    def io_loop(self) -> IoLoop:
        """The provider I/O loop (started on first use, closed at exit)."""
        with self._lock:
            if self._loop is None:
                self._loop = IoLoop(self.loop_objects)
                atexit.register(self._loop.close)
            return self._loop

    def redis_client(
        self, url: str, *, decode_responses: bool = True, socket_timeout: float | None = None
    ) -> redis.Redis:
        """The sync client for ``url`` and these options: one connection pool, shared by the
        process's threads (workers/connections.py builds the URL from Settings)."""
        key = (url, decode_responses, socket_timeout)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                options = {} if socket_timeout is None else {"socket_timeout": socket_timeout}
                found = redis.Redis.from_url(url, decode_responses=decode_responses, **options)
                self._clients[key] = found
        return found

    def shared(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The object ``factory`` built for ``key`` in this process (built once)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]  # type: ignore[no-any-return]


_THIS = ProcessResources()  # cheap: a lock and empty dicts; the loop starts on first use


def this_process() -> ProcessResources:
    """This process's resources (the same object before and after a fork: reset in place,
    so a Runtime built in the parent holds the child's)."""
    return _THIS
