"""Driving the async guards (ledger, breaker, rate limiter, cache, retry budget) from
synchronous test code: :class:`Blocking` runs each of a guard's coroutine methods on this
process's I/O loop (``workers.aio.io_loop``) — the loop the serving engine awaits them on,
so a Redis guard uses that loop's ``redis.asyncio`` client as in production — and passes
every other attribute through (the synchronous ``usage`` / ``state`` reads, key builders)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from workers.aio import io_loop


class Blocking:
    def __init__(self, guard: Any) -> None:
        self.guard = guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.guard, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return io_loop().run(attr(*args, **kwargs))

        return blocking


def on_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``'s coroutine run on this process's I/O loop."""
    return io_loop().run(fn(*args, **kwargs))
