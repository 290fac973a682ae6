"""Global rate limits per (provider, model): requests and tokens per minute, every worker
together (Celery's own ``rate_limit`` is per worker).

Each target (``"provider/model"``) has two token buckets, refilled continuously:

* **requests**: ``rpm / 60`` per second, capacity ``max(1, rpm × burst_s / 60)``;
* **tokens**: ``tpm / 60`` per second, capacity ``max(1, tpm × burst_s / 60)``.

``burst_s`` (default :data:`DEFAULT_BURST_S` = 5 s) is how many seconds of quota may go at
once: a fresh fleet starts with full buckets and fires at most ``burst_s`` seconds' worth,
then settles at the rate — not a whole minute's quota in the first second, which providers
that enforce their per-minute limits over shorter intervals answer with 429s.

:meth:`RateLimiter.acquire` takes one request and ``tokens`` tokens if both buckets hold
them (and returns 0.0), or takes nothing and returns how long to wait. A request needing
more tokens than the token bucket can hold (``tokens`` > capacity) is let through when the
bucket is *full*, and the bucket goes into debt (negative level) by the excess, so the
long-run rate stays ``tpm`` and the oversize request waits at most one bucket refill —
though under sustained contention from smaller requests it can keep losing the race for a
full bucket; :func:`wait_for` bounds the wait. Choose ``burst_s`` so the token capacity holds
the largest usual request. ``None`` limits are unlimited (that bucket is not kept).

Two backends implement :class:`RateLimiter`: :class:`RedisRateLimiter` (one Lua call for
both buckets, Redis ``TIME`` as the clock, on this process's ``redis.asyncio`` client of the
running loop) and :class:`MemoryRateLimiter` (one process). Both are awaited on the I/O
loop; neither blocks it.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from workers import keys
from workers.aio import LoopRedis
from workers.guards.lua import Script

DEFAULT_BURST_S = 5.0
DEFAULT_MAX_WAIT_S = 120.0
DEFAULT_PREFIX = keys.RATELIMIT
MIN_WAIT_S = 0.001


class RateLimitTimeout(TimeoutError):
    """:func:`wait_for` could not get through the limiter within ``max_wait_s``."""


class RateLimiter(Protocol):
    async def acquire(self, target: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        """Take one request and ``tokens`` tokens from ``target``'s buckets if both have
        them and return 0.0; otherwise take nothing and return the seconds to wait before
        trying again (> 0). ``None`` = unlimited. A request needing more tokens than a full
        bucket holds is allowed when the bucket is full (the bucket goes into debt)."""
        ...


@dataclass(frozen=True)
class Bucket:
    """One bucket's refill rate (per second) and capacity."""

    rate: float
    capacity: float

    @classmethod
    def per_minute(cls, limit: int, burst_s: float) -> Bucket:
        return cls(limit / 60.0, max(1.0, limit * burst_s / 60.0))


def buckets(
    rpm: int | None, tpm: int | None, burst_s: float = DEFAULT_BURST_S
) -> tuple[Bucket | None, Bucket | None]:
    """The request and token buckets for these limits (``None``: unlimited)."""
    return (
        Bucket.per_minute(rpm, burst_s) if rpm else None,
        Bucket.per_minute(tpm, burst_s) if tpm else None,
    )


def _need(bucket: Bucket, amount: float) -> float:
    """What must be in the bucket for ``amount`` to go (capped at a full bucket)."""
    return min(amount, bucket.capacity)


def _check_burst(burst_s: float) -> float:
    if not burst_s > 0:
        raise ValueError(f"burst_s must be > 0, not {burst_s}")
    return burst_s


# ---------------------------------------------------------------------------- in memory


class MemoryRateLimiter:
    """In-process buckets with the same semantics as :class:`RedisRateLimiter`; thread-safe.

    ``clock`` is in seconds (``time.monotonic`` by default; tests inject a fake one)."""

    def __init__(
        self, burst_s: float = DEFAULT_BURST_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = _check_burst(burst_s)
        self._clock = clock
        self._lock = threading.Lock()
        # (target, "r" | "t") -> (level, time of that level); absent = full
        self._levels: dict[tuple[str, str], tuple[float, float]] = {}

    async def acquire(self, target: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        req, tok = buckets(rpm, tpm, self._burst)
        if req is None and tok is None:
            return 0.0
        tokens = max(0, tokens)
        with self._lock:
            now = self._clock()
            wait = 0.0
            r = t = 0.0
            if req is not None:
                r = self._level(target, "r", req, now)
                if r < 1:
                    wait = (1 - r) / req.rate
            if tok is not None:
                t = self._level(target, "t", tok, now)
                if t < _need(tok, tokens):
                    wait = max(wait, (_need(tok, tokens) - t) / tok.rate)
            if wait > 0:
                return max(wait, MIN_WAIT_S)
            if req is not None:
                self._levels[(target, "r")] = (r - 1, now)
            if tok is not None:
                self._levels[(target, "t")] = (t - tokens, now)
            return 0.0

    def _level(self, target: str, kind: str, bucket: Bucket, now: float) -> float:
        stored = self._levels.get((target, kind))
        if stored is None:
            return bucket.capacity
        level, then = stored
        return min(bucket.capacity, level + max(0.0, now - then) * bucket.rate)


# ---------------------------------------------------------------------------- in Redis

# The script: workers/scripts/ratelimit_acquire.lua.


class RedisRateLimiter:
    """Buckets in Redis, shared by every worker: ``keys.ratelimit_buckets`` holds both (a hash that
    expires once both buckets would be full again, which is the same as absent)."""

    _ACQUIRE = Script.load("ratelimit_acquire")

    def __init__(
        self, aio: LoopRedis, burst_s: float = DEFAULT_BURST_S, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._aio = aio
        self._burst = _check_burst(burst_s)
        self._prefix = prefix

    @classmethod
    def from_url(
        cls, url: str, burst_s: float = DEFAULT_BURST_S, prefix: str = DEFAULT_PREFIX
    ) -> RedisRateLimiter:
        return cls(LoopRedis(url), burst_s, prefix)

    async def acquire(self, target: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        req, tok = buckets(rpm, tpm, self._burst)
        if req is None and tok is None:
            return 0.0
        args = [
            repr(req.rate) if req else 0,
            repr(req.capacity) if req else 0,
            repr(tok.rate) if tok else 0,
            repr(tok.capacity) if tok else 0,
            max(0, tokens),
        ]
        bucket = [keys.ratelimit_buckets(target, self._prefix)]
        wait = float(await self._ACQUIRE.run(self._aio.client(), bucket, args))
        return max(wait, MIN_WAIT_S) if wait > 0 else 0.0


# ---------------------------------------------------------------------------- waiting


_jitter = random.Random()


async def wait_for(
    limiter: RateLimiter,
    target: str,
    rpm: int | None,
    tpm: int | None,
    tokens: int,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> float:
    """Wait until ``limiter`` lets one request of ``tokens`` tokens through to ``target``
    and return the seconds slept (0.0 when it went at once).

    Sleeps what the limiter says plus up to 10 % jitter (so the coroutines of a fleet that
    were told the same wait do not all come back at the same instant). Raises
    :class:`RateLimitTimeout` — before sleeping — as soon as the total would exceed
    ``max_wait_s``."""
    waited = 0.0
    while True:
        wait = await limiter.acquire(target, rpm, tpm, tokens)
        if wait <= 0:
            return waited
        if waited + wait > max_wait_s or math.isinf(wait):
            raise RateLimitTimeout(
                f"rate limit of {target}: still {wait:.2f} s to wait after {waited:.2f} s "
                f"(max {max_wait_s:.0f} s; rpm={rpm}, tpm={tpm}, tokens={tokens})"
            )
        delay = min(wait * (1 + 0.1 * _jitter.random()), max_wait_s - waited)
        await sleep(delay)
        waited += delay
