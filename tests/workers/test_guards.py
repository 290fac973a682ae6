"""The guards on the serving engine's I/O loop: no blocking Redis call ever runs there; the
response cache and the job's retry budget behave alike in memory and in Redis; a tier batch
reads the cache once and asks each breaker once; each process and loop has its own
``redis.asyncio`` client."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.connection

from routing.resilience import BreakerSpec
from tests.workers.blocking import Blocking
from tests.workers.clock import FakeClock
from tests.workers.serving import questions, serve, unit_policy, unit_settings
from workers import attempts
from workers.aio import IoLoop, LoopRedis, io_loop
from workers.attempts import BreakerView
from workers.guards.breaker import MemoryBreaker, RedisBreaker
from workers.guards.bundle import Guards
from workers.guards.cache import MemoryCache, RedisCache
from workers.guards.ledger import MemoryLedger
from workers.guards.ledger_redis import RedisLedger
from workers.guards.ratelimit import MemoryRateLimiter, RedisRateLimiter
from workers.guards.retry_budget import MemoryRetryBudget, RedisRetryBudget
from workers.sim.server import SimServer


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 5  # the simulated provider's seed (tests/conftest.py)


# ---------------------------------------------------------------- nothing blocks the loop


@pytest.fixture
def blocking_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Every command a *synchronous* Redis client sends, sorted by where it was sent from:
    ``on_loop`` (a thread running an event loop: it blocked that loop) or ``off_loop``."""
    seen: dict[str, list[str]] = {"on_loop": [], "off_loop": []}
    real = redis.connection.AbstractConnection.send_packed_command

    def watched(self: Any, command: Any, check_health: bool = True) -> None:
        on_loop = asyncio._get_running_loop() is not None
        where = f"{threading.current_thread().name}: {bytes(b''.join(command))[:60]!r}"
        seen["on_loop" if on_loop else "off_loop"].append(where)
        real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", watched)
    yield seen


@pytest.mark.integration
def test_no_blocking_redis_call_runs_on_the_io_loop(
    redis_url: str, sim: SimServer, blocking_calls: dict[str, list[str]]
) -> None:
    """A tier batch served with every guard in Redis — cache, a capped budget (and its
    metric), breaker, rate limiter, retries and the job's retry budget — makes its Redis
    round trips on the loop's ``redis.asyncio`` client only; the one synchronous read (the
    budget metric's ``usage``) runs in a worker thread."""
    sim.configure(error_rate=0.2)
    job = f"noblock-{uuid.uuid4().hex[:8]}"
    policy = unit_policy(
        max_attempts=4,
        max_delay_s=0.01,
        budgets={"job": {"usd": "1000"}, "reservation_ttl_s": 60},
        cache={"enabled": True},
        rpm=1_000_000,
        tpm=1_000_000_000,
    )
    cfg = unit_settings(sim.base_url, broker_url=redis_url)
    guards = Guards.for_policy(cfg, policy)
    assert isinstance(guards.ledger, RedisLedger) and isinstance(guards.cache, RedisCache)
    served = serve(policy, cfg, questions(40), guards, job_id=job)
    assert all(s.status == "ok" for s in served)
    assert sim.stats()["errors"] > 0  # retries happened
    assert blocking_calls["on_loop"] == []
    assert any("usage" in c or "EVALSHA" in c for c in blocking_calls["off_loop"])

    # the detector does see a blocking call made on the loop
    async def blocks() -> None:
        redis.Redis.from_url(redis_url).ping()

    io_loop().run(blocks())
    assert any("PING" in call for call in blocking_calls["on_loop"])


# ---------------------------------------------------------------- cache and retry budget


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_cache(kind: str, request: pytest.FixtureRequest) -> Blocking:
    if kind == "memory":
        return Blocking(MemoryCache())
    return Blocking(RedisCache(LoopRedis(request.getfixturevalue("redis_url"))))


def test_cache_reads_many_keys_at_once_in_order(kind: str, request: pytest.FixtureRequest) -> None:
    cache, tag = make_cache(kind, request), uuid.uuid4().hex
    keys = [f"br:cache:test:{tag}:{i}" for i in range(5)]
    assert cache.get_many(keys) == [None] * 5
    cache.put(keys[1], {"text": "one", "n": 1}, 60)
    cache.put(keys[3], {"text": "three", "n": 3}, 60)
    assert cache.get_many(keys) == [
        None,
        {"text": "one", "n": 1},
        None,
        {"text": "three", "n": 3},
        None,
    ]
    assert cache.get_many([]) == []


def test_cache_writes_many_entries_at_once(kind: str, request: pytest.FixtureRequest) -> None:
    cache, tag = make_cache(kind, request), uuid.uuid4().hex
    keys = [f"br:cache:test:{tag}:{i}" for i in range(3)]
    cache.put_many([(keys[0], {"n": 0}), (keys[2], {"n": 2, "text": "é"})], 60)
    cache.put_many([], 60)
    assert cache.get_many(keys) == [{"n": 0}, None, {"n": 2, "text": "é"}]


def test_a_cached_answer_expires(kind: str, request: pytest.FixtureRequest) -> None:
    cache, key = make_cache(kind, request), f"br:cache:test:{uuid.uuid4().hex}"
    cache.put(key, {"text": "soon gone"}, 1)
    assert cache.get_many([key]) == [{"text": "soon gone"}]
    time.sleep(1.1)
    assert cache.get_many([key]) == [None]


def make_budget(kind: str, request: pytest.FixtureRequest) -> Blocking:
    if kind == "memory":
        return Blocking(MemoryRetryBudget())
    return Blocking(RedisRetryBudget(LoopRedis(request.getfixturevalue("redis_url")), 60))


def test_the_retry_budget_gives_up_to_its_limit_per_job(
    kind: str, request: pytest.FixtureRequest
) -> None:
    budget, job = make_budget(kind, request), f"J-{uuid.uuid4().hex[:8]}"
    assert [budget.take(job, 3) for _ in range(5)] == [True, True, True, False, False]
    assert budget.take(f"{job}-other", 3)  # per job
    assert budget.take(job, 4)  # a larger limit (more rows) has room for one more


def test_concurrent_retries_never_exceed_the_budget(
    kind: str, request: pytest.FixtureRequest
) -> None:
    budget, job = make_budget(kind, request).guard, f"J-{uuid.uuid4().hex[:8]}"

    async def many() -> list[bool]:
        return list(await asyncio.gather(*(budget.take(job, 10) for _ in range(50))))

    assert sum(io_loop().run(many())) == 10


# ---------------------------------------------------------------- batching


class Spy:
    """Counts the calls made to a guard's coroutine methods, then passes them on."""

    def __init__(self, guard: Any) -> None:
        self.guard, self.calls = guard, dict[str, list[Any]]()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.guard, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.setdefault(name, []).append(args)
            return await attr(*args, **kwargs)

        return counted


def test_a_tier_batch_reads_the_cache_once_and_asks_the_breaker_once(sim: SimServer) -> None:
    policy = unit_policy(cache={"enabled": True})
    cfg = unit_settings(sim.base_url)
    cache, breaker = Spy(MemoryCache()), Spy(MemoryBreaker(policy.breaker))
    guards = Guards(MemoryLedger(), breaker, MemoryRateLimiter(), MemoryRetryBudget(), cache)  # type: ignore[arg-type]
    rows = questions(30)
    served = serve(policy, cfg, rows, guards)
    assert all(s.status == "ok" for s in served)
    (keys,) = cache.calls["get_many"]  # one read for the batch, before its calls
    whole = [s for s in served if s.done.finish_reason != "length"]  # a cut answer is not kept
    assert len(keys[0]) == 30 and len(cache.calls["put"]) == len(whole) > 0
    assert len(breaker.calls["acquire"]) == 1 and len(breaker.calls["record"]) == 30
    again = serve(policy, cfg, rows, guards, job_id="again")
    assert sum(s.cache_hit for s in again) == len(whole)
    assert len(cache.calls["get_many"]) == 2  # a second batch: one read again


def test_the_breaker_view_asks_again_when_an_outcome_says_open_or_it_is_stale() -> None:
    clock = FakeClock()
    spec = BreakerSpec(failures=2, cooldown_s=10, min_calls=1000)
    breaker = Spy(MemoryBreaker(spec, clock=clock))
    view = BreakerView(breaker, clock)  # type: ignore[arg-type]
    t = "p/m"

    def acquire() -> str | None:
        return io_loop().run(view.acquire(t))  # type: ignore[no-any-return]

    assert [acquire() for _ in range(3)] == ["closed"] * 3
    assert len(breaker.calls["acquire"]) == 1
    clock.advance(attempts.BREAKER_VIEW_S)  # stale: asked again
    assert acquire() == "closed" and len(breaker.calls["acquire"]) == 2
    io_loop().run(view.record(t, False, False))
    io_loop().run(view.record(t, False, False))  # opened: the view forgets "closed"
    assert acquire() is None and acquire() is None
    assert len(breaker.calls["acquire"]) == 4


def test_callers_arriving_while_the_breaker_is_asked_share_the_answer() -> None:
    class Slow:
        """A breaker whose answers take a while (a Redis round trip), counting them."""

        def __init__(self, answers: list[str | None]) -> None:
            self.answers, self.asked = answers, 0

        async def acquire(self, target: str) -> str | None:
            self.asked += 1
            await asyncio.sleep(0.01)
            return self.answers.pop(0)

    async def together(view: BreakerView, n: int) -> list[str | None]:
        return list(await asyncio.gather(*(view.acquire("p/m") for _ in range(n))))

    closed = Slow(["closed"])
    assert io_loop().run(together(BreakerView(closed), 20)) == ["closed"] * 20  # type: ignore[arg-type]
    assert closed.asked == 1
    # a probe is its caller's alone: the others ask for themselves (and find it taken)
    half_open = Slow(["probe", None, None])
    assert io_loop().run(together(BreakerView(half_open), 3)) == ["probe", None, None]  # type: ignore[arg-type]
    assert half_open.asked == 3


# ---------------------------------------------------------------- clients per loop


@pytest.mark.integration
def test_each_loop_has_its_own_client_closed_with_it(redis_url: str) -> None:
    conn = LoopRedis(redis_url)

    async def client() -> Any:
        made = conn.client()
        assert await made.ping()
        return made

    here = io_loop().run(client())
    assert io_loop().run(client()) is here  # one per loop: reused
    other_loop = IoLoop()
    try:
        there = other_loop.run(client())
        assert there is not here
    finally:
        other_loop.close()
    assert there.connection_pool._in_use_connections == set()  # closed with its loop
    assert io_loop().run(client()) is here


@pytest.mark.integration
def test_guards_are_in_redis_for_a_fleet_and_in_memory_otherwise(redis_url: str) -> None:
    policy = unit_policy()
    fleet = Guards.for_policy(unit_settings(broker_url=redis_url), policy)
    assert isinstance(fleet.ledger, RedisLedger) and isinstance(fleet.breaker, RedisBreaker)
    assert isinstance(fleet.limiter, RedisRateLimiter) and isinstance(fleet.cache, RedisCache)
    assert isinstance(fleet.retries, RedisRetryBudget)
    local = Guards.for_policy(unit_settings(), policy)
    assert isinstance(local.ledger, MemoryLedger) and isinstance(local.cache, MemoryCache)
