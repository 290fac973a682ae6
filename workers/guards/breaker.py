"""Circuit breakers per (provider, model), one state shared by every worker.

A breaker guards a *target* (``"provider/model"``) with the policy's
:class:`~routing.resilience.BreakerSpec`:

* **closed** — calls go. Each outcome updates the consecutive-failure count and a sliding
  window of calls. ``failures`` consecutive failures, or at least ``min_calls`` calls in the
  last ``window_s`` seconds failing at a rate ≥ ``failure_rate``, open the breaker.
* **open** — no call goes (the caller uses the tier's fallback chain) for ``cooldown_s``.
* **half-open** — the cool-down is over: up to ``half_open_probes`` calls at a time are let
  through as *probes*. A probe's success closes the breaker (fresh counters); its failure
  opens it again for another cool-down.

The caller asks :meth:`Breaker.acquire` before every provider call and reports the outcome
with :meth:`Breaker.record` (``probe=True`` when ``acquire`` returned ``"probe"``). Only
provider failures count: the caller records ``ok=False`` for 5xx, 429, timeouts and
connection errors, ``ok=True`` for a success, and nothing it did wrong itself (4xx).

Rules for outcomes that arrive late (calls are concurrent, across many workers):

* A non-probe outcome while the breaker is open or half-open is ignored: it belongs to a
  call acquired before the breaker opened, and only probes decide when to close.
* A probe outcome counts only while the breaker is half-open. When another probe has
  already re-opened it, the late outcome only frees its slot; when another probe has already
  closed it, the late outcome counts as an ordinary closed-state outcome.
* A probe slot is a *lease* (``probe_lease_s``, default ``max(cooldown_s, 5 s)``): a caller
  that crashes between ``acquire`` and ``record`` blocks probing for at most one lease.

The window is ``WINDOW_BUCKETS`` buckets of ``window_s / WINDOW_BUCKETS`` seconds each, so
it covers between 90 % and 100 % of ``window_s``; the count is exact within it.

Two backends implement :class:`Breaker`: :class:`RedisBreaker` (atomic Lua, Redis ``TIME``
as the clock so every worker agrees) and :class:`MemoryBreaker` (one process, tests). The
serving engine awaits ``acquire`` and ``record`` on this process's I/O loop
(``redis.asyncio``); ``state`` is a synchronous read for operators (the metrics exporter,
tests), made outside that loop.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import redis

from routing.resilience import BreakerSpec
from workers import connections, keys, luasource
from workers.aio import LoopRedis
from workers.guards.lua import Script

CLOSED: Literal["closed"] = "closed"
OPEN: Literal["open"] = "open"
HALF_OPEN: Literal["half_open"] = "half_open"
PROBE: Literal["probe"] = "probe"

WINDOW_BUCKETS = 10
MIN_PROBE_LEASE_S = 5.0
DEFAULT_PREFIX = keys.BREAKER
# An idle breaker's keys expire after this long past its window / cool-down (a closed
# breaker then forgets an old consecutive-failure count; an open one closes).
IDLE_TTL_S = 3600.0


class Breaker(Protocol):
    async def acquire(self, target: str) -> str | None:
        """May a call to ``target`` (``"provider/model"``) go now? ``"closed"`` (a normal
        call), ``"probe"`` (half-open: this call is one of the allowed probes), or ``None``
        (open: do not call; use the fallback)."""
        ...

    async def record(self, target: str, ok: bool, probe: bool) -> bool:
        """The outcome of a call acquired before. A probe's success closes the breaker; its
        failure re-opens it (new cool-down); either way its probe slot is released.
        Non-probe outcomes update the consecutive-failure count and the window. Returns
        whether the breaker is closed afterwards."""
        ...

    def state(self, target: str) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (for metrics and status; synchronous,
        never on the I/O loop)."""
        ...


def default_probe_lease_s(spec: BreakerSpec) -> float:
    """How long a probe slot stays taken without a :meth:`Breaker.record`."""
    return max(spec.cooldown_s, MIN_PROBE_LEASE_S)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# ---------------------------------------------------------------------------- in memory


@dataclass
class _Target:
    open_until: float | None = None  # None: closed
    consecutive: int = 0
    # bucket index -> (bucket epoch, calls, failures)
    buckets: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    probes: dict[str, float] = field(default_factory=dict)  # lease token -> expiry


class MemoryBreaker:
    """In-process breakers with the same semantics as :class:`RedisBreaker`; thread-safe.

    ``clock`` is in seconds (``time.monotonic`` by default; tests inject a fake one)."""

    def __init__(
        self,
        spec: BreakerSpec,
        clock: Callable[[], float] = time.monotonic,
        probe_lease_s: float | None = None,
    ) -> None:
        self._spec = spec
        self._clock = clock
        self._lease = probe_lease_s if probe_lease_s is not None else default_probe_lease_s(spec)
        self._width = spec.window_s / WINDOW_BUCKETS
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = defaultdict(_Target)
        self._tokens: dict[str, list[str]] = defaultdict(list)

    async def acquire(self, target: str) -> str | None:
        with self._lock:
            now = self._clock()
            t = self._targets[target]
            if t.open_until is None:
                return CLOSED
            if now < t.open_until:
                return None
            t.probes = {k: exp for k, exp in t.probes.items() if exp > now}
            if len(t.probes) >= self._spec.half_open_probes:
                return None
            token = uuid.uuid4().hex
            t.probes[token] = now + self._lease
            self._tokens[target].append(token)
            return PROBE

    async def record(self, target: str, ok: bool, probe: bool) -> bool:
        with self._lock:
            self._record(target, ok, probe)
            return self._targets[target].open_until is None

    def _record(self, target: str, ok: bool, probe: bool) -> None:
        now = self._clock()
        t = self._targets[target]
        if probe and self._tokens[target]:
            t.probes.pop(self._tokens[target].pop(0), None)
        if t.open_until is not None:
            if probe and now >= t.open_until:
                if ok:
                    self._targets[target] = _Target(probes=t.probes)
                else:
                    self._open(t, now)
            return
        t.consecutive = 0 if ok else t.consecutive + 1
        epoch = math.floor(now / self._width)
        index = epoch % WINDOW_BUCKETS
        e, calls, fails = t.buckets.get(index, (epoch, 0, 0))
        if e != epoch:
            calls, fails = 0, 0
        t.buckets[index] = (epoch, calls + 1, fails + (0 if ok else 1))
        if ok:
            return
        if t.consecutive >= self._spec.failures:
            self._open(t, now)
            return
        live = [(c, f) for e, c, f in t.buckets.values() if e > epoch - WINDOW_BUCKETS]
        calls = sum(c for c, _ in live)
        fails = sum(f for _, f in live)
        if calls >= self._spec.min_calls and fails >= self._spec.failure_rate * calls:
            self._open(t, now)

    def _open(self, t: _Target, now: float) -> None:
        t.open_until = now + self._spec.cooldown_s
        t.consecutive = 0
        t.buckets.clear()

    def state(self, target: str) -> str:
        with self._lock:
            t = self._targets.get(target)
            if t is None or t.open_until is None:
                return CLOSED
            return OPEN if self._clock() < t.open_until else HALF_OPEN


# ---------------------------------------------------------------------------- in Redis

# The scripts: workers/scripts/breaker_{acquire,record,state}.lua.
_STATES = {0: CLOSED, 1: OPEN, 2: HALF_OPEN}


class RedisBreaker:
    """Breakers in Redis, shared by every worker; each operation is one Lua call.

    ``acquire`` / ``record`` run on ``aio`` (this process's ``redis.asyncio`` client of the
    running loop); ``state`` on ``client`` (synchronous, for operators).

    Keys per target (one hash tag, so a Redis Cluster keeps them in one slot):
    ``keys.breaker_state`` (state hash) and ``keys.breaker_probes`` (probe leases).
    Probe lease tokens are remembered in this object, so a probe's ``record`` releases a
    lease this process took, never another worker's."""

    _ACQUIRE = Script.load("breaker_acquire")
    _RECORD = Script.load("breaker_record")

    def __init__(
        self,
        client: redis.Redis | None,
        spec: BreakerSpec,
        prefix: str = DEFAULT_PREFIX,
        probe_lease_s: float | None = None,
        *,
        aio: LoopRedis | None = None,
    ) -> None:
        self._aio = aio
        self._spec = spec
        self._prefix = prefix
        lease = probe_lease_s if probe_lease_s is not None else default_probe_lease_s(spec)
        self._lease_ms = _ms(lease)
        self._width_ms = _ms(spec.window_s / WINDOW_BUCKETS)
        self._ttl_ms = _ms(max(spec.window_s, spec.cooldown_s + lease) + IDLE_TTL_S)
        state = luasource.load("breaker_state")
        self._state = client.register_script(state) if client is not None else None
        self._lock = threading.Lock()
        self._tokens: dict[str, list[str]] = defaultdict(list)

    @classmethod
    def from_url(
        cls,
        url: str,
        spec: BreakerSpec,
        prefix: str = DEFAULT_PREFIX,
        probe_lease_s: float | None = None,
    ) -> RedisBreaker:
        return cls(connections.client(url), spec, prefix, probe_lease_s, aio=LoopRedis(url))

    def _keys(self, target: str) -> list[str]:
        return [keys.breaker_state(target, self._prefix), keys.breaker_probes(target, self._prefix)]

    def _client(self) -> redis.asyncio.Redis:
        if self._aio is None:
            raise RuntimeError("this RedisBreaker was made without aio=: it can only read state")
        return self._aio.client()

    async def acquire(self, target: str) -> str | None:
        token = uuid.uuid4().hex
        args = [token, self._spec.half_open_probes, self._lease_ms]
        code = int(await self._ACQUIRE.run(self._client(), self._keys(target), args))
        if code == 2:
            with self._lock:
                self._tokens[target].append(token)
            return PROBE
        return CLOSED if code == 1 else None

    async def record(self, target: str, ok: bool, probe: bool) -> bool:
        token = ""
        if probe:
            with self._lock:
                tokens = self._tokens.get(target)
                if tokens:
                    token = tokens.pop(0)
        spec = self._spec
        args = [
            int(ok),
            int(probe),
            token,
            spec.failures,
            repr(spec.failure_rate),
            spec.min_calls,
            self._width_ms,
            WINDOW_BUCKETS,
            _ms(spec.cooldown_s),
            self._ttl_ms,
        ]
        return int(await self._RECORD.run(self._client(), self._keys(target), args)) == 1

    def state(self, target: str) -> str:
        if self._state is None:
            raise RuntimeError("this RedisBreaker was made without a synchronous client")
        return _STATES[int(self._state(keys=self._keys(target)[:1]))]
