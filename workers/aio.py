"""One event loop per process for provider I/O, and the clients that live on it.

Celery tasks and the local executor's threads are synchronous; they hand coroutines to
this process's I/O loop (a daemon thread) instead of ``asyncio.run`` per batch, so HTTP
clients, their connection pools and TLS contexts are built once per process and reused
by every batch (a new client per batch cost ~55 ms of TLS setup, measured in the
pipeline benchmark). The loop is created lazily and again after a fork, so a prefork
Celery child never inherits its parent's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


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
            for closer in self._closers:
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
