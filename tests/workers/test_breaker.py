"""Circuit breakers: one behaviour suite, run against the in-memory breaker (a fake clock)
and the Redis breaker (a real ``redis-server``, real time, short cool-downs), both awaited
on this process's I/O loop as the serving engine does (``tests/workers/blocking.py``); then
the Redis breaker shared by several processes."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from routing.resilience import BreakerSpec
from tests.workers.blocking import Blocking
from tests.workers.clock import FakeClock
from workers.aio import LoopRedis
from workers.guards.breaker import MemoryBreaker, RedisBreaker, default_probe_lease_s

Breaker = Blocking  # a breaker driven from this synchronous test code

# Short enough for real time, long enough that a few Redis calls never outlast it.
COOLDOWN = 0.3


@dataclass
class Rig:
    """A breaker factory and a way to let time pass (fake for memory, real for Redis)."""

    make: Callable[..., Breaker]
    wait: Callable[[float], None]
    now: Callable[[], float]


def spec(**overrides: Any) -> BreakerSpec:
    base: dict[str, Any] = {
        "failures": 3,
        "failure_rate": 0.5,
        "window_s": 60.0,
        "min_calls": 1000,
        "cooldown_s": COOLDOWN,
        "half_open_probes": 1,
    }
    return BreakerSpec(**(base | overrides))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        clock = FakeClock()
        yield Rig(
            lambda s, **kw: Blocking(MemoryBreaker(s, clock=clock, **kw)), clock.advance, clock
        )
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url, decode_responses=True)

    def in_redis(s: BreakerSpec, **kw: Any) -> Breaker:
        return Blocking(RedisBreaker(client, s, aio=LoopRedis(url), **kw))

    try:
        yield Rig(in_redis, time.sleep, time.monotonic)
    finally:
        client.close()


def target() -> str:
    return f"prov/model-{uuid.uuid4().hex[:10]}"


def fail(breaker: Breaker, t: str, n: int) -> None:
    for _ in range(n):
        assert breaker.acquire(t) == "closed"
        breaker.record(t, ok=False, probe=False)


def open_then_cool(rig: Rig, breaker: Breaker, t: str, failures: int) -> None:
    """Open the breaker, then wait out the cool-down: it is half-open."""
    fail(breaker, t, failures)
    assert breaker.state(t) == "open"
    rig.wait(COOLDOWN * 1.2)
    assert breaker.state(t) == "half_open"


# ---------------------------------------------------------------- closed → open


def test_a_new_breaker_is_closed(rig: Rig) -> None:
    breaker, t = rig.make(spec()), target()
    assert breaker.state(t) == "closed"
    assert breaker.acquire(t) == "closed"


def test_opens_after_n_consecutive_failures(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=3)), target()
    fail(breaker, t, 2)
    breaker.record(t, ok=True, probe=False)  # a success resets the run
    fail(breaker, t, 2)
    assert breaker.state(t) == "closed"
    fail(breaker, t, 1)
    assert breaker.state(t) == "open"
    assert breaker.acquire(t) is None
    assert breaker.acquire(t) is None


def test_record_answers_whether_the_breaker_is_closed_after_it(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2, half_open_probes=2)), target()
    assert breaker.record(t, ok=False, probe=False) is True  # one failure: still closed
    assert breaker.record(t, ok=False, probe=False) is False  # opened
    assert breaker.record(t, ok=True, probe=False) is False  # a late outcome: still open
    rig.wait(COOLDOWN * 1.2)
    assert [breaker.acquire(t), breaker.acquire(t)] == ["probe", "probe"]
    assert breaker.record(t, ok=False, probe=True) is False  # re-opened
    rig.wait(COOLDOWN * 1.2)
    assert breaker.acquire(t) == "probe"
    assert breaker.record(t, ok=True, probe=True) is True  # closed


def test_opens_by_failure_rate_over_min_calls(rig: Rig) -> None:
    breaker = rig.make(spec(failures=100, failure_rate=0.5, min_calls=10))
    t = target()
    for _ in range(4):  # 8 calls, 4 failed: under min_calls
        breaker.record(t, ok=True, probe=False)
        breaker.record(t, ok=False, probe=False)
    breaker.record(t, ok=True, probe=False)
    assert breaker.state(t) == "closed"
    breaker.record(t, ok=False, probe=False)  # 10 calls, 5 failed: 0.5 ≥ 0.5
    assert breaker.state(t) == "open"
    assert breaker.acquire(t) is None

    low = target()  # one failure in three never reaches the rate
    for _ in range(20):
        for ok in (True, True, False):
            breaker.record(low, ok=ok, probe=False)
    assert breaker.state(low) == "closed"


def test_failures_leave_the_window(rig: Rig) -> None:
    breaker = rig.make(spec(failures=100, failure_rate=0.5, min_calls=10, window_s=0.5))
    t = target()
    for _ in range(9):
        breaker.record(t, ok=False, probe=False)
    rig.wait(0.7)  # those nine are out of the window
    breaker.record(t, ok=False, probe=False)
    for _ in range(9):
        breaker.record(t, ok=True, probe=False)
    assert breaker.state(t) == "closed"


def test_outcomes_of_calls_in_flight_when_it_opened_are_ignored(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2)), target()
    assert breaker.acquire(t) == "closed"  # in flight
    fail(breaker, t, 2)
    assert breaker.state(t) == "open"
    breaker.record(t, ok=True, probe=False)  # the call in flight succeeds: not a probe
    assert breaker.state(t) == "open"
    rig.wait(COOLDOWN * 1.2)
    breaker.record(t, ok=True, probe=False)
    breaker.record(t, ok=False, probe=False)
    assert breaker.state(t) == "half_open"


# ---------------------------------------------------------------- half-open


def test_half_open_allows_only_half_open_probes_at_a_time(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2, half_open_probes=2)), target()
    open_then_cool(rig, breaker, t, 2)
    with ThreadPoolExecutor(8) as pool:
        grants = list(pool.map(lambda _: breaker.acquire(t), range(24)))
    assert grants.count("probe") == 2
    assert grants.count(None) == 22
    breaker.record(t, ok=False, probe=True)  # re-opens: nobody may probe during cool-down
    assert breaker.acquire(t) is None


def test_a_probe_slot_is_freed_by_its_outcome(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2, half_open_probes=1)), target()
    open_then_cool(rig, breaker, t, 2)
    assert breaker.acquire(t) == "probe"
    assert breaker.acquire(t) is None


def test_probe_success_closes_with_fresh_counts(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=3)), target()
    open_then_cool(rig, breaker, t, 3)
    assert breaker.acquire(t) == "probe"
    breaker.record(t, ok=True, probe=True)
    assert breaker.state(t) == "closed"
    assert breaker.acquire(t) == "closed"
    fail(breaker, t, 2)  # the failures before the open are forgotten
    assert breaker.state(t) == "closed"
    fail(breaker, t, 1)
    assert breaker.state(t) == "open"


def test_probe_failure_reopens_for_a_new_cooldown(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2)), target()
    open_then_cool(rig, breaker, t, 2)
    assert breaker.acquire(t) == "probe"
    breaker.record(t, ok=False, probe=True)
    assert breaker.state(t) == "open"
    assert breaker.acquire(t) is None
    rig.wait(COOLDOWN * 1.2)
    assert breaker.state(t) == "half_open"
    assert breaker.acquire(t) == "probe"  # the failed probe's slot was released


def test_a_late_probe_success_after_another_probe_reopened_is_ignored(rig: Rig) -> None:
    breaker, t = rig.make(spec(failures=2, half_open_probes=2)), target()
    open_then_cool(rig, breaker, t, 2)
    assert [breaker.acquire(t), breaker.acquire(t)] == ["probe", "probe"]
    breaker.record(t, ok=False, probe=True)
    breaker.record(t, ok=True, probe=True)
    assert breaker.state(t) == "open"


def test_an_expired_probe_lease_frees_the_slot(rig: Rig) -> None:
    """A caller that crashed after acquire (never records) blocks probing for one lease."""
    breaker, t = rig.make(spec(failures=2), probe_lease_s=0.3), target()
    open_then_cool(rig, breaker, t, 2)
    assert breaker.acquire(t) == "probe"  # ... and its caller dies
    assert breaker.acquire(t) is None
    rig.wait(0.4)
    assert breaker.acquire(t) == "probe"
    breaker.record(t, ok=True, probe=True)
    assert breaker.state(t) == "closed"


def test_default_probe_lease() -> None:
    assert default_probe_lease_s(spec(cooldown_s=0.3)) == 5.0
    assert default_probe_lease_s(spec(cooldown_s=30)) == 30.0


def test_breakers_are_per_target(rig: Rig) -> None:
    breaker, a, b = rig.make(spec(failures=2)), target(), target()
    fail(breaker, a, 2)
    assert (breaker.state(a), breaker.state(b)) == ("open", "closed")
    assert breaker.acquire(b) == "closed"


def test_an_outage_is_served_by_the_fallback_and_sees_only_probes(rig: Rig) -> None:
    """The fault scenario in miniature: one model fails every call; rows go to the
    fallback once the breaker opens; the model then sees one probe per cool-down."""
    breaker, t = rig.make(spec(failures=5)), target()
    model_calls, probes, fallback = 0, 0, 0
    rows = 200
    start = rig.now()
    for _ in range(rows):
        grant = breaker.acquire(t)
        if grant is None:
            fallback += 1
        else:
            model_calls += 1
            probes += grant == "probe"
            breaker.record(t, ok=False, probe=grant == "probe")
            fallback += 1  # a failed row is retried on the fallback
        rig.wait(0.005)
    assert model_calls - probes == 5  # opened after exactly `failures` failures
    assert fallback == rows
    assert 1 <= probes <= (rig.now() - start) / COOLDOWN + 1


@pytest.mark.integration
def test_a_client_without_decode_responses_works(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)  # bytes replies to the synchronous reads
    breaker = Blocking(RedisBreaker(client, spec(failures=1), aio=LoopRedis(redis_url)))
    t = target()
    assert (breaker.acquire(t), breaker.state(t)) == ("closed", "closed")
    breaker.record(t, ok=False, probe=False)
    assert (breaker.acquire(t), breaker.state(t)) == (None, "open")
    client.close()


# ---------------------------------------------------------------- shared by processes


def _fail_times(url: str, t: str, n: int) -> str:
    breaker = Blocking(RedisBreaker.from_url(url, spec(failures=n)))  # this process's loop
    fail(breaker, t, n)
    return breaker.state(t)


def _try_probe(url: str, t: str, n: int, start: float) -> int:
    breaker = Blocking(RedisBreaker.from_url(url, spec(failures=2)))
    while time.time() < start:  # both processes try at the same moment
        time.sleep(0.001)
    return sum(breaker.acquire(t) == "probe" for _ in range(n))


@pytest.mark.integration
def test_state_is_shared_by_processes(redis_url: str) -> None:
    t = target()
    here = Blocking(RedisBreaker.from_url(redis_url, spec(failures=2)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.apply(_fail_times, (redis_url, t, 2)) == "open"
        assert here.state(t) == "open"
        assert here.acquire(t) is None
        time.sleep(COOLDOWN * 1.2)
        start = time.time() + 0.3
        probes = pool.starmap(_try_probe, [(redis_url, t, 50, start)] * 2)
    assert sum(probes) == 1  # half_open_probes=1 across both processes
    assert here.acquire(t) is None  # that probe's lease is held by the other process
