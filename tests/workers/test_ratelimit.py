"""Global rate limits: one behaviour suite, run against the in-memory limiter (a fake clock)
and the Redis limiter (a real ``redis-server``, real time), both awaited on this process's
I/O loop as the serving engine does (``tests/workers/blocking.py``); then the Redis limiter
shared by three processes, and the async ``wait_for`` helper."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.workers.blocking import Blocking
from tests.workers.clock import FakeClock
from workers.aio import LoopRedis, io_loop
from workers.guards.ratelimit import (
    DEFAULT_BURST_S,
    MemoryRateLimiter,
    RateLimitTimeout,
    RedisRateLimiter,
    buckets,
    wait_for,
)

RateLimiter = Blocking  # a limiter driven from this synchronous test code


@dataclass
class Rig:
    """A limiter factory (by ``burst_s``) and a way to let time pass."""

    make: Callable[[float], RateLimiter]
    wait: Callable[[float], None]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        clock = FakeClock()
        yield Rig(lambda burst: Blocking(MemoryRateLimiter(burst, clock=clock)), clock.advance)
        return
    aio = LoopRedis(request.getfixturevalue("redis_url"))
    yield Rig(lambda burst: Blocking(RedisRateLimiter(aio, burst)), time.sleep)


def target() -> str:
    return f"prov/model-{uuid.uuid4().hex[:10]}"


# Waits computed by Redis are a few ms of real time later than the memory ones: compare
# with this slack, never tightly.
SLACK = 0.05


def test_capacities() -> None:
    assert buckets(None, None) == (None, None)
    req, tok = buckets(600, 90_000)
    assert req is not None and tok is not None
    assert (req.rate, req.capacity) == (10.0, 10 * DEFAULT_BURST_S)
    assert (tok.rate, tok.capacity) == (1500.0, 1500 * DEFAULT_BURST_S)
    req, _ = buckets(6, None, burst_s=1.0)
    assert req is not None and req.capacity == 1.0  # at least one request


def test_unlimited_never_waits(rig: Rig) -> None:
    limiter, t = rig.make(1.0), target()
    assert all(limiter.acquire(t, None, None, 10**9) == 0.0 for _ in range(200))


def test_requests_bucket_allows_a_burst_then_the_rate(rig: Rig) -> None:
    limiter, t = rig.make(0.5), target()  # rpm 600 = 10/s, capacity 5
    assert [limiter.acquire(t, 600, None, 1) for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire(t, 600, None, 1)
    assert 0.1 - SLACK < wait <= 0.1
    assert limiter.acquire(t, 600, None, 1) > 0  # a refusal took nothing, and gave nothing
    rig.wait(0.12)
    assert limiter.acquire(t, 600, None, 1) == 0.0
    assert limiter.acquire(t, 600, None, 1) > 0


def test_a_slow_rate_still_allows_one_request(rig: Rig) -> None:
    limiter, t = rig.make(1.0), target()  # rpm 6: capacity 0.1 → 1
    assert limiter.acquire(t, 6, None, 1) == 0.0
    assert 10 - SLACK < limiter.acquire(t, 6, None, 1) <= 10


def test_tokens_bucket(rig: Rig) -> None:
    limiter, t = rig.make(0.5), target()  # tpm 6000 = 100/s, capacity 50
    assert limiter.acquire(t, None, 6000, 30) == 0.0
    wait = limiter.acquire(t, None, 6000, 30)  # 20 left: 10 short
    assert 0.1 - SLACK < wait <= 0.1
    assert limiter.acquire(t, None, 6000, 20) == 0.0  # the refusal took nothing
    assert 0.1 - SLACK < limiter.acquire(t, None, 6000, 10) <= 0.1
    rig.wait(0.12)
    assert limiter.acquire(t, None, 6000, 10) == 0.0


def test_a_request_refused_for_requests_takes_no_tokens(rig: Rig) -> None:
    limiter, t = rig.make(1.0), target()  # rpm 60: capacity 1; tpm 600: capacity 10, 10/s
    assert limiter.acquire(t, 60, 600, 1) == 0.0  # requests 0, tokens 9
    for _ in range(20):
        assert limiter.acquire(t, 60, 600, 9) > 0  # no request left
    assert limiter.acquire(t, None, 600, 9) == 0.0  # the 20 refusals left the 9 tokens


def test_a_request_refused_for_tokens_takes_no_request(rig: Rig) -> None:
    limiter, t = rig.make(0.5), target()  # rpm 120: capacity 1; tpm 1200: capacity 10, 20/s
    assert limiter.acquire(t, 120, 1200, 10) == 0.0  # requests 0, tokens 0
    rig.wait(0.55)  # both full again
    assert limiter.acquire(t, None, 1200, 5) == 0.0  # tokens 5, the request bucket untouched
    for _ in range(20):
        assert limiter.acquire(t, 120, 1200, 10) > 0  # 5 tokens short
    assert limiter.acquire(t, 120, 1200, 5) == 0.0  # the request was still there


def test_an_oversize_request_goes_when_the_bucket_is_full_and_leaves_a_debt(
    rig: Rig,
) -> None:
    limiter = rig.make(1.0)  # tpm 600: 10/s, capacity 10
    full = target()
    assert limiter.acquire(full, None, 600, 25) == 0.0  # more than the bucket ever holds
    wait = limiter.acquire(full, None, 600, 1)  # level -15: 1.6 s until one token
    assert 1.6 - SLACK < wait <= 1.6

    partial = target()
    assert limiter.acquire(partial, None, 600, 5) == 0.0
    wait = limiter.acquire(partial, None, 600, 25)  # waits for a full bucket, not forever
    assert 0.5 - SLACK < wait <= 0.5


def test_limits_are_per_target(rig: Rig) -> None:
    limiter, a, b = rig.make(1.0), target(), target()
    assert limiter.acquire(a, 60, None, 1) == 0.0
    assert limiter.acquire(a, 60, None, 1) > 0
    assert limiter.acquire(b, 60, None, 1) == 0.0


@pytest.mark.integration
def test_a_wait_too_small_to_print_is_still_a_wait(redis_url: str) -> None:
    """Regression: a level a hair under one request (float steps of 0.01) gave a wait that
    Lua printed as "0.000000", which read as "taken" while nothing was taken."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    limiter, t = Blocking(RedisRateLimiter(LoopRedis(redis_url), burst_s=1.0)), target()
    secs, _ = client.time()
    future_ms = (secs + 60) * 1000  # no refill until then
    client.hset(f"br:ratelimit:{{{t}}}", mapping={"r": "0.99999999999999989", "rts": future_ms})
    assert limiter.acquire(t, 600, None, 1) >= 0.001
    client.close()


# ---------------------------------------------------------------- wait_for


def test_wait_for_sleeps_until_allowed_and_gives_up_after_max_wait() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(1.0, clock=clock)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    t = target()
    assert asyncio.run(wait_for(limiter, t, 60, None, 1, sleep=sleep)) == 0.0
    waited = asyncio.run(wait_for(limiter, t, 60, None, 1, sleep=sleep))
    assert 1.0 <= waited <= 1.1 and waited == sum(slept)
    with pytest.raises(RateLimitTimeout, match="max 0 s"):
        asyncio.run(wait_for(limiter, t, 60, None, 1, max_wait_s=0.5, sleep=sleep))
    assert asyncio.run(wait_for(limiter, t, None, None, 1, max_wait_s=0)) == 0.0


@pytest.mark.integration
def test_wait_for_paces_concurrent_coroutines(redis_url: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_url, burst_s=0.2)  # rpm 600: 10/s, capacity 2
    t = target()

    async def main() -> list[float]:
        return list(await asyncio.gather(*(wait_for(limiter, t, 600, None, 1) for _ in range(8))))

    start = time.monotonic()
    waits = io_loop().run(main())  # on the loop whose Redis client the limiter uses
    elapsed = time.monotonic() - start
    assert waits.count(0.0) == 2  # the burst
    assert elapsed >= (8 - 2) / 10 * 0.9  # the rest at 10/s
    assert elapsed < 5


# ---------------------------------------------------------------- shared by processes


# Two limits, each 10 requests/s with a burst of 10 (burst_s=1): one by requests, one by
# tokens. Every process hammers both targets at once.
LIMITS = {"rpm": (600, None, 1), "tpm": (None, 6000, 10)}


def _hammer(url: str, targets: dict[str, str], ready: Any, results: Any) -> None:
    """Take as many as the limiter allows for 2 s, from when every process is ready."""
    limiter = Blocking(RedisRateLimiter.from_url(url, burst_s=1.0))  # this process's loop
    ready.wait()
    first = time.time()
    granted, last = dict.fromkeys(targets, 0), first
    while last < first + 2.0:
        waits = []
        for name, t in targets.items():
            wait = limiter.acquire(t, *LIMITS[name])
            granted[name] += wait == 0
            waits.append(wait)
        last = time.time()
        if min(waits) > 0:
            time.sleep(min(*waits, 0.02))
    results.put((granted, first, last))


@pytest.mark.integration
def test_three_processes_share_one_limit(redis_url: str) -> None:
    targets = {name: target() for name in LIMITS}
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, targets, ready, results)) for _ in "abc"]
    for proc in procs:
        proc.start()
    try:
        ready.wait(timeout=20)
        reports = [results.get(timeout=20) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=5)
    span = max(last for _, _, last in reports) - min(first for _, first, _ in reports)
    for name in LIMITS:
        per_process = [granted[name] for granted, _, _ in reports]
        # a full bucket (10) at once, then 10/s: ~30 in 2 s, shared by the three processes
        assert 10 + 10 * 2.0 * 0.8 <= sum(per_process) <= 10 + 10 * span + 2, (
            name,
            per_process,
            span,
        )
        assert sum(n > 0 for n in per_process) >= 2, (name, per_process)
